package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestFlatLimitKeepsTiers: an update that gives one flat JetStream limit
// (max_ack_pending) to an account with tiered limits must not drop its
// tiers: "only the limits given change". Dropped, the account's JetStream
// went off on every server (its streams unreachable) although the caller
// asked for a consumer limit.
func TestFlatLimitKeepsTiers(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	mib, zero, four := int64(1<<20), int64(0), int64(4)
	acct, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "tiered", Limits: &api.AccountLimits{
		TieredLimits: map[string]api.JetStreamLimits{"R1": {DiskStorage: &mib, MemStorage: &zero, Streams: &four, Consumer: &four}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "tiered", Name: "app"})
	js, err := jetstream.New(dial(t, env, creds))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "before", Subjects: []string{"before.>"}, Replicas: 1, MaxBytes: 64 << 10}); err != nil {
		t.Fatalf("an R1 stream within the tier: %v", err)
	}
	pending := int64(1000)
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "tiered", Limits: &api.AccountLimits{
		JetStreamLimits: api.JetStreamLimits{MaxAckPending: &pending},
	}})
	t.Logf("update of max_ack_pending on a tiered account: %v", err)
	if err != nil && !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("update: %v, want success or ErrInvalid", err)
	}
	for _, tok := range d.lookupAll(t, acct.Account.PublicKey) {
		c, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Limits.JetStreamTieredLimits["R1"]; !ok || !c.Limits.IsJSEnabled() {
			t.Errorf("after an update of max_ack_pending, a server holds the account with limits %+v: its R1 tier is gone, JetStream enabled %v", c.Limits.JetStreamLimits, c.Limits.IsJSEnabled())
		}
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "after", Subjects: []string{"after.>"}, Replicas: 1, MaxBytes: 64 << 10}); err != nil {
		t.Errorf("JetStream of the tiered account after an update of max_ack_pending: %v", err)
	}
}

// TestEmptyTiersTurnJetStreamOff: "tiered_limits": {} is the way the
// refusal of flat limits on a tiered account names to turn JetStream off;
// it must do that, on the servers.
func TestEmptyTiersTurnJetStreamOff(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	disk := int64(1 << 20)
	acct, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "tiered", Limits: &api.AccountLimits{
		TieredLimits: map[string]api.JetStreamLimits{"R1": {DiskStorage: &disk}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "tiered", Limits: &api.AccountLimits{
		JetStreamLimits: api.JetStreamLimits{MemStorage: &zero, DiskStorage: &zero},
	}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), `"tiered_limits": {}`) {
		t.Fatalf("flat zero storage on a tiered account: %v, want ErrInvalid naming the way to turn JetStream off", err)
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "tiered", Limits: &api.AccountLimits{
		TieredLimits: map[string]api.JetStreamLimits{},
	}}); err != nil {
		t.Fatalf("tiered_limits {}: %v", err)
	}
	for _, tok := range d.lookupAll(t, acct.Account.PublicKey) {
		c, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits.IsJSEnabled() || len(c.Limits.JetStreamTieredLimits) > 0 {
			t.Errorf("after tiered_limits {}, a server holds JetStream enabled: %+v", c.Limits.JetStreamTieredLimits)
		}
	}
}

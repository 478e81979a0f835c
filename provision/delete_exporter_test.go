package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestDeletedExporterServesNoJetStream: with allow_delete off, a deleted
// account's disabled version is its end state on the servers. No user can
// connect to it, but its JetStream answers without a connection: an
// account importing its JetStream API went on reading its streams after
// the delete, for good.
func TestDeletedExporterServesNoJetStream(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	mem, unlimited := int64(1<<20), int64(-1)
	alpha, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha",
		Limits:  &api.AccountLimits{JetStreamLimits: api.JetStreamLimits{MemStorage: &mem, Streams: &unlimited, Consumer: &unlimited}},
		Exports: jwt.Exports{{Name: "js", Subject: "$JS.API.>", Type: jwt.Service}},
	})
	if err != nil {
		t.Fatal(err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "owner"})
	owner := dial(t, env, alphaCreds)
	js, err := owner.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("orders.1", []byte("secret order")); err != nil {
		t.Fatal(err)
	}
	owner.Close()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "alpha-js", Subject: "$JS.API.>", LocalSubject: "alpha.js.>", Account: "alpha", Type: jwt.Service},
	}}); err != nil {
		t.Fatal(err)
	}
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "reader"})
	reader := dial(t, env, betaCreds)
	info := func() string {
		m, err := reader.Request("alpha.js.STREAM.INFO.ORDERS", nil, 2*time.Second)
		if err != nil {
			return err.Error()
		}
		return string(m.Data)
	}
	if got := info(); !strings.Contains(got, `"messages":1`) {
		t.Fatalf("beta reads alpha's stream before the delete: %s", got)
	}
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if got := info(); strings.Contains(got, `"messages":1`) {
		t.Fatalf("after alpha's delete, beta still reads its stream through the import: %s", got)
	}
}

// TestOldTombstoneLosesJetStream: a disabled version made before the
// delete turned JetStream off (stored, and held by the servers, with
// JetStream limits) is signed anew without them by a reconcile pass, and
// pushed: left so, its streams went on answering its importers.
func TestOldTombstoneLosesJetStream(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	mem, unlimited := int64(1<<20), int64(-1)
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "old",
		Limits: &api.AccountLimits{JetStreamLimits: api.JetStreamLimits{MemStorage: &mem, Streams: &unlimited, Consumer: &unlimited}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "old"}); err != nil {
		t.Fatal(err)
	}
	// The tombstone as an earlier version made it: JetStream still on.
	var tomb provision.Account
	all, err := d.store.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Name == "old" {
			tomb = a
		}
	}
	c, err := jwt.DecodeAccountClaims(tomb.JWT)
	if err != nil {
		t.Fatal(err)
	}
	c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: mem, Streams: -1, Consumer: -1}
	c.IssuedAt = 0
	time.Sleep(1100 * time.Millisecond) // a newer iat than the stored version's
	old := tomb
	if old.JWT, err = c.Encode(d.op.Signer); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.UpdateAccount(ctx, old, tomb.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, old.JWT); err != nil {
		t.Fatal(err)
	}

	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	all, err = d.store.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range all {
		if a.PublicKey != tomb.PublicKey {
			continue
		}
		found = true
		c, err := jwt.DecodeAccountClaims(a.JWT)
		if err != nil {
			t.Fatal(err)
		}
		if c.Limits.JetStreamLimits != (jwt.JetStreamLimits{}) {
			t.Errorf("after a reconcile pass the stored tombstone still allows JetStream: %+v", c.Limits.JetStreamLimits)
		}
		for i, got := range d.lookupAll(t, a.PublicKey) {
			if got != a.JWT {
				t.Errorf("server %d holds %.40q, the store %.40q", i, got, a.JWT)
			}
		}
	}
	if !found {
		t.Errorf("after a reconcile pass the store has no tombstone of %s: a finished delete is kept (allow_delete off)", tomb.PublicKey)
	}
}

package provision_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRotationResignsATombstoneOverTheJWTLimit: the disabled version of a
// deleted account, signed when the JWT limit was larger (a reconnect lands
// on a server with a smaller max_payload: SetMaxJWTSize), is over the limit
// in use. A new disabled version is slimmed to fit (Service.disable), but
// the rotation's re-sign of the stored one was refused "too large" at
// every run: nobody can edit a deleted account smaller, so the tombstone
// stayed signed by the old key for good, and the rotation never finished.
func TestRotationResignsATombstoneOverTheJWTLimit(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	d := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator, c.MaxJWTSize = next, 8<<10 })
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	desc := strings.Repeat("d", 3000)
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "full", Description: desc})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "full"}); err != nil {
		t.Fatal(err)
	}
	tomb, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	// The servers now take less: the tombstone's disabled version is over
	// the limit, as close to it as a few bytes would be after a rotation.
	d.svc.SetMaxJWTSize(len(tomb.JWT) - 10)
	rep, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) > 0 {
		t.Fatalf("the rotation failed to re-sign %v (the tombstone %s, %d bytes, limit %d)", rep.Failed, pub, len(tomb.JWT), len(tomb.JWT)-10)
	}
	op, err := next()
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if c.Issuer != op.SignerKey {
		t.Errorf("the stored tombstone is signed by %s after the rotation, want %s", c.Issuer, op.SignerKey)
	}
	if _, all := c.Revocations[jwt.All]; !all || c.Limits.Conn != 0 {
		t.Errorf("the re-signed tombstone is not disabled: %+v", c.Limits)
	}
}

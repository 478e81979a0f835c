package provision_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRotationResignsAnExpiredAccount: an operator rotation re-signs an
// account whose expiry has passed too, keeping the expiry. Left signed by
// the old key, `operator finish` (which checks that every account on the
// servers is signed by the new key) refused for as long as the account
// stayed expired, and sending the rotation again, as it advised, changed
// nothing.
func TestRotationResignsAnExpiredAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	d := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator = next })
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "lapsed", ExpiresIn: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	before, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	rep, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) > 0 {
		t.Fatalf("the rotation failed for %v", rep.Failed)
	}
	op, err := next()
	if err != nil {
		t.Fatal(err)
	}
	copies := d.lookupAll(t, acc.Account.PublicKey)
	if len(copies) == 0 {
		t.Fatal("no server holds the account")
	}
	for _, cp := range copies {
		c, err := jwt.DecodeAccountClaims(cp)
		if err != nil {
			t.Fatal(err)
		}
		if c.Issuer != op.SignerKey {
			t.Errorf("a server's copy of the expired account is signed by %s after the rotation, want the new key %s", c.Issuer, op.SignerKey)
		}
		if c.Expires != before.Expires {
			t.Errorf("the re-signed copy expires at %d, want the account's expiry %d kept", c.Expires, before.Expires)
		}
	}
}

// TestPassResignsAnExpiredAccount: an instance that adopts the next
// operator signing key at a reconcile pass re-signs what is on the old key,
// an expired account too (keeping its expiry), for the same reason as the
// rotation above.
func TestPassResignsAnExpiredAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	ctx := context.Background()
	old := newDomain(t, env, nil)
	waitUp(t, old)
	acc, err := old.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "lapsed", ExpiresIn: "2s"})
	if err != nil {
		t.Fatal(err)
	}
	old.stop()
	time.Sleep(3 * time.Second)
	d := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator = next })
	defer d.stop()
	waitUp(t, d)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	op, err := next()
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range d.lookupAll(t, acc.Account.PublicKey) {
		if c, err := jwt.DecodeAccountClaims(cp); err != nil || c.Issuer != op.SignerKey {
			t.Errorf("a server's copy of the expired account is signed by %s after the pass switched keys, want the new key %s (%v)", c.Issuer, op.SignerKey, err)
		}
	}
}

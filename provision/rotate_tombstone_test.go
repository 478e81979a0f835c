package provision_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestReconcilerResignsTombstones: with allow_delete off, a deleted
// account's disabled version stays on the servers, signed with the
// operator signing key of its time. The operator rotates the key without
// prov.operator.rotate: the reconciler switches to the new key and
// re-signs what the old key signed. It must re-sign the tombstone too,
// in the store and on the servers: signed with the old key, it stops
// `operator finish` for good, and once the old key is removed a push of
// it is not taken by any server.
func TestReconcilerResignsTombstones(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	nextOp, err := next()
	if err != nil {
		t.Fatal(err)
	}
	d := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator = next })
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	if rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil || rep.Phase != "deleted" {
		t.Fatalf("delete: %+v, %v", rep, err)
	}
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	a, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if iss := mustClaims(t, a.JWT).Issuer; iss != nextOp.SignerKey {
		t.Errorf("the store's tombstone is signed by %s, not the new key %s", iss, nextOp.SignerKey)
	}
	for _, cp := range d.lookupAll(t, pub) {
		if cp != "" && mustClaims(t, cp).Issuer != nextOp.SignerKey {
			t.Errorf("a server holds the disabled version signed by %s, not the new key", mustClaims(t, cp).Issuer)
		}
	}
}

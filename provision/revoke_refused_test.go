package provision_test

import (
	"context"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRefusedRevokeOfUnrecordedKeyRecordsNothing: a user.revoke of a key
// never issued here whose change is refused (its push failed, the account
// was put back) changes nothing: no server has the revocation, so the key
// can still be issued, and is not refused as "revoked".
func TestRefusedRevokeOfUnrecordedKeyRecordsNothing(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	fail := &failNextPush{}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { fail.Resolver = r; return fail })
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateUser()
	upub, _ := kp.PublicKey()

	fail.armed.Store(true)
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: upub}); err == nil {
		t.Fatal("the revoke whose push failed was answered as done")
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice", PublicKey: upub}); err != nil {
		t.Fatalf("after a refused revoke of a key never issued, user.create with that key = %v, want it issued", err)
	}
	// And a revoke that went through records it as before.
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: opub}); err != nil {
		t.Fatal(err)
	}
	if u, err := d.store.User(ctx, opub); err != nil || !u.Revoked {
		t.Fatalf("after an acknowledged revoke of a key never issued, its record = %+v, %v; want it recorded as revoked", u, err)
	}
}

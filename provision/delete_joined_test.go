package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRevokeJoiningAFailedDeleteIsMadeOnThePutBack: a revoke joins the
// version of a delete (it arrives while the delete waits for the next
// second), whose disabled version's push is refused: the account is put
// back live. The revoke was answered 404 "being deleted", and the user,
// not revoked, still connected.
func TestRevokeJoiningAFailedDeleteIsMadeOnThePutBack(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	r := &refuseDisabled{}
	d := newDomain(t, env, func(rc provision.Resolver) provision.Resolver { r.Resolver = rc; return r })
	t.Cleanup(d.stop)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: pub, Name: "u"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	// A version issued early in a second: the delete waits for the next
	// one, and the revoke sent meanwhile joins it.
	for time.Now().Nanosecond() > 100*int(time.Millisecond) {
		time.Sleep(time.Millisecond)
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("now")}); err != nil {
		t.Fatal(err)
	}
	r.on.Store(true)
	deleted := make(chan error, 1)
	go func() {
		_, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
		deleted <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_, rerr := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: u.User.PublicKey})
	derr := <-deleted
	r.on.Store(false)
	if derr == nil {
		t.Fatal("the delete stood; want its push refused")
	}
	a, err := d.store.Account(ctx, pub)
	if err != nil || !a.Live() {
		t.Fatalf("the account was not put back: %+v, %v", a.Phase, err)
	}
	if rerr != nil {
		t.Errorf("revoke: %v, while the account was put back live", rerr)
	}
	if connects(env, creds) {
		t.Errorf("the user connects after its revoke (answered %v)", rerr)
	}
}

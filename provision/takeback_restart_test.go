package provision_test

import (
	"context"
	"errors"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRefusedCreateWhoseTakeBackFailedIsNotToldItChangedNothing: a
// create's push is refused by every server (502: "a failed request
// changes nothing"), and its take-back, the removal from the file store,
// fails (the disk full for a moment). The failed create is remembered in
// memory only: once the instance restarts, it is an account like any
// other in the store, and the reconciler pushes it live. Its caller must
// not be told the plain refusal, but that it may have taken effect.
func TestRefusedCreateWhoseTakeBackFailedIsNotToldItChangedNothing(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	t.Cleanup(d.stop)
	fr := &fullOnRemove{Store: d.store}
	fr.armed.Store(true)
	r := &refuseOnce{Resolver: d.rc}
	r.armed.Store(true)
	svc, err := provision.New(provision.Config{Operator: d.op, Store: fr, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err == nil {
		t.Fatal("the create should have failed")
	}
	if fr.armed.Load() {
		t.Fatal("the failed create was not removed")
	}
	svc.Close()
	// The instance restarts on the same store.
	again, aerr := provision.New(provision.Config{Operator: d.op, Store: d.store, Resolver: d.rc, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if aerr != nil {
		t.Fatal(aerr)
	}
	t.Cleanup(again.Close)
	a, aerr := d.store.AccountByName(ctx, "acme")
	if aerr != nil {
		t.Fatal(aerr)
	}
	if _, aerr := again.Reconcile(ctx, api.ReconcileRequest{}); aerr != nil {
		t.Fatal(aerr)
	}
	if !heldLive(t, d.lookupAll(t, a.PublicKey)) {
		t.Skip("the failed create was not pushed after the restart")
	}
	if errors.Is(err, provision.ErrRefused) || !errors.Is(err, provision.ErrInDoubt) {
		t.Errorf("the failed create is live on the servers after a restart, but its caller was told %q (refused: %v, in doubt: %v); it must be told it may have taken effect", err, errors.Is(err, provision.ErrRefused), errors.Is(err, provision.ErrInDoubt))
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// fullPutBack, once armed, fails the second account write (the put-back
// after a change's failed push; the first is the change) as a full disk
// does, having changed nothing.
type fullPutBack struct {
	*filestore.Store
	armed atomic.Bool
	n     atomic.Int32
}

func (f *fullPutBack) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if f.armed.Load() && f.n.Add(1) == 2 {
		return 0, fmt.Errorf("filestore: update account %s: %w: the disk of store_dir has no room", a.PublicKey, provision.ErrFull)
	}
	return f.Store.UpdateAccount(ctx, a, rev)
}

// refuseOnce, once armed, has one push refused by every server, which
// stores nothing.
type refuseOnce struct {
	provision.Resolver
	armed atomic.Bool
}

func (r *refuseOnce) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.armed.CompareAndSwap(true, false) {
		res := provision.PushResult{{Server: "x", Code: 500, Message: "jwt store is full", Answered: true}}
		return res, &provision.RefusedError{Result: res, Reason: "jwt store is full"}
	}
	return r.Resolver.Update(ctx, token)
}

// TestRefusedPushWhosePutBackFailsIsNotToldItChangedNothing: an update's
// push is refused (502: "a failed request changes nothing"), and the
// put-back of the previous version fails (the disk full for a moment).
// The store keeps the change, and the reconciler pushes it to the
// servers: its caller must not be told the plain refusal, which says
// nothing was changed, but that it may have taken effect.
func TestRefusedPushWhosePutBackFailsIsNotToldItChangedNothing(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	t.Cleanup(d.stop)
	fp := &fullPutBack{Store: d.store}
	r := &refuseOnce{Resolver: d.rc}
	svc, err := provision.New(provision.Config{Operator: d.op, Store: fp, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	ctx := context.Background()
	created, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	fp.armed.Store(true)
	r.armed.Store(true)
	_, err = svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("failed change")})
	if err == nil {
		t.Fatal("the update should have failed")
	}
	if fp.n.Load() < 2 {
		t.Fatal("no put-back was written")
	}
	cur, serr := d.store.Account(ctx, pub)
	if serr != nil {
		t.Fatal(serr)
	}
	if mustClaims(t, cur.JWT).Description != "failed change" {
		t.Skip("the put-back landed after all")
	}
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	pushed := false
	for _, cp := range d.lookupAll(t, pub) {
		if cp != "" && mustClaims(t, cp).Description == "failed change" {
			pushed = true
		}
	}
	if !pushed {
		t.Fatal("the reconciler did not push the change the store kept")
	}
	if errors.Is(err, provision.ErrRefused) || !errors.Is(err, provision.ErrInDoubt) {
		t.Errorf("the change is on the servers, but its caller was told %q (refused: %v, in doubt: %v); it must be told it may have taken effect", err, errors.Is(err, provision.ErrRefused), errors.Is(err, provision.ErrInDoubt))
	}
}

package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// refuseShrinking, once armed, has one push refused by every server, which
// stores nothing, after the servers' max_payload went down meanwhile (as
// when a reconnect lands on a server with a smaller one: SetMaxJWTSize).
type refuseShrinking struct {
	provision.Resolver
	armed atomic.Bool
	svc   *provision.Service
	limit int
}

func (r *refuseShrinking) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.armed.CompareAndSwap(true, false) {
		r.svc.SetMaxJWTSize(r.limit)
		res := provision.PushResult{{Server: "x", Code: 500, Message: "jwt store is full", Answered: true}}
		return res, &provision.RefusedError{Result: res, Reason: "jwt store is full"}
	}
	return r.Resolver.Update(ctx, token)
}

// TestRefusedPushWhosePreviousVersionCannotBeSignedIsInDoubt: an update
// that makes a large account small has its push refused, and the previous
// version cannot be signed anew to be put back (over the JWT size limit
// now). restore gave up and returned nil: the store kept the change, which
// the reconciler pushes, while its caller was told the plain refusal (502:
// nothing was changed). It must be told the change may have taken effect.
func TestRefusedPushWhosePreviousVersionCannotBeSignedIsInDoubt(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	t.Cleanup(d.stop)
	r := &refuseShrinking{Resolver: d.rc, limit: 4 << 10}
	svc, err := provision.New(provision.Config{Operator: d.op, Store: d.store, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	r.svc = svc
	ctx := context.Background()
	big := strings.Repeat("x", 6<<10)
	created, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Description: big})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	r.armed.Store(true)
	_, err = svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("small")})
	if err == nil {
		t.Fatal("the update should have failed")
	}
	cur, serr := d.store.Account(ctx, pub)
	if serr != nil {
		t.Fatal(serr)
	}
	if mustClaims(t, cur.JWT).Description != "small" {
		t.Fatalf("the previous version was put back though it is over the limit: %q", mustClaims(t, cur.JWT).Description)
	}
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	pushed := false
	for _, cp := range d.lookupAll(t, pub) {
		if cp != "" && mustClaims(t, cp).Description == "small" {
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

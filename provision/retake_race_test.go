package provision_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// notSentThenHeld fails the first push as never sent, and holds the second
// until released, then sends it.
type notSentThenHeld struct {
	provision.Resolver
	n        atomic.Int32
	reached  chan string
	released chan struct{}
}

func (r *notSentThenHeld) Update(ctx context.Context, token string) (provision.PushResult, error) {
	switch r.n.Add(1) {
	case 1:
		return provision.PushResult{}, provision.ErrNotSent
	case 2:
		r.reached <- token
		<-r.released
	}
	return r.Resolver.Update(ctx, token)
}

// TestRetakeReadsWhetherHeldUnderTheLock: with the file store, a create
// whose push was not sent and whose removal failed is remembered as held
// by no server. An update of it (by someone who read it in the store) is
// pushed while a reconcile pass waits for the account's lock to take it
// back. The update's push reached the servers, so the take-back must
// disable and delete it there: read from before the wait, the take-back
// took it for one no server holds, forgot its keys and left it live on
// the servers for good, an orphan.
func TestRetakeReadsWhetherHeldUnderTheLock(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	fr := &fullOnRemove{Store: d.store}
	fr.armed.Store(true)
	g := &notSentThenHeld{Resolver: d.rc, reached: make(chan string, 1), released: make(chan struct{})}
	svc, err := provision.New(provision.Config{Operator: d.op, Store: fr, Resolver: g, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err == nil {
		t.Fatal("the create should have failed")
	}
	if fr.armed.Load() {
		t.Fatal("the failed create was not removed")
	}
	accs, err := d.store.Accounts(ctx)
	if err != nil || len(accs) != 1 {
		t.Fatalf("want the failed create in the store, have %d accounts (%v)", len(accs), err)
	}
	pub := accs[0].PublicKey
	updated := make(chan error, 1)
	go func() {
		_, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("later")})
		updated <- err
	}()
	select {
	case <-g.reached: // stored; its push held, under the account's lock
	case <-time.After(10 * time.Second):
		t.Fatal("the update was not pushed")
	}
	passed := make(chan error, 1)
	go func() {
		_, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		passed <- err
	}()
	// The pass's take-back waits for the account's lock.
	time.Sleep(300 * time.Millisecond)
	close(g.released)
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	live := func() bool {
		for _, cp := range d.lookupAll(t, pub) {
			if cp == "" {
				continue
			}
			if _, off := mustClaims(t, cp).Revocations[jwt.All]; !off {
				return true
			}
		}
		return false
	}
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) && live() {
		t.Errorf("the store forgot the account's keys while a server holds it live")
	}
}

package provision_test

import (
	"context"
	"errors"
	"path/filepath"
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
	t.Parallel()
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
	// The pass's take-back waits for the account's lock, which the
	// update holds: released before, the race is not run at all.
	deadline := time.Now().Add(10 * time.Second)
	for svc.AccountLockRefs(pub) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the pass did not come to wait for the account's lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(g.released)
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	live := func() bool { return heldLive(t, d.lookupAll(t, pub)) }
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) && live() {
		t.Errorf("the store forgot the account's keys while a server holds it live")
	}
}

// nextSigningKey adds a new signing key to env's operator JWT, restarts
// the nats-server with it, and returns the key's seed file.
func nextSigningKey(t *testing.T, env *provtest.Env) string {
	t.Helper()
	keyPath := addSigningKey(t, env.Dir)
	env.Restart(t)
	return keyPath
}

// addSigningKey adds a new signing key to the operator JWT of the
// deployment in dir, for the servers started after, and returns the path
// of its seed.
func addSigningKey(t *testing.T, dir string) string {
	t.Helper()
	pub, keyPath := provtest.NewOperatorKeyFile(t, dir, "operator-signing-next.nk")
	provtest.EditOperatorJWT(t, dir, func(oc *jwt.OperatorClaims) { oc.SigningKeys.Add(pub) })
	return keyPath
}

// TestRotationDoesNotPushAFailedCreate: with the file store, a create
// whose push was not sent and whose removal failed stays in the store,
// remembered for the next pass to take back. An operator signing-key
// rotation re-signs every account: it must not push that failed create
// live to the servers, which no pass does either, while its caller was
// told it failed.
func TestRotationDoesNotPushAFailedCreate(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	d := newDomain(t, env, nil)
	defer d.stop()
	waitUp(t, d)
	fr := &fullOnRemove{Store: d.store}
	fr.armed.Store(true)
	g := &notSentAfterHold{Resolver: d.rc, reached: make(chan string, 1), released: make(chan struct{})}
	close(g.released)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	svc, err := provision.New(provision.Config{Operator: d.op, NextOperator: next, Store: fr, Resolver: g, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err == nil {
		t.Fatal("the create should have failed")
	}
	pub := mustClaims(t, <-g.reached).Subject
	if fr.armed.Load() {
		t.Fatal("the failed create was not removed")
	}
	rep, err := svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rotation: %d accounts, %d re-signed, failed %v", rep.Accounts, rep.Resigned, rep.Failed)
	noLiveCopy(t, d.lookupAll(t, pub), "the rotation pushed the failed create live")
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := d.store.Account(ctx, pub); err == nil && cur.Live() {
		t.Errorf("the store holds the failed create live after a pass")
	}
	noLiveCopy(t, d.lookupAll(t, pub), "the failed create is live on a server after a pass")
}

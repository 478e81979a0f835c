package provision_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestAbandonedCreateChangedByPeer: instance A stores a new account and its
// push is held, then fails as never sent. Meanwhile instance B, on the same
// KV store, changes the account (stored and pushed). A's create fails, and
// its clean-up finds the record changed (ErrStale): it must take the
// account back on top of B's version, not give up and leave a failed
// create live on the servers and in the store for good.
func TestAbandonedCreateChangedByPeer(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	g := &notSentAfterHold{reached: make(chan string, 1), released: make(chan struct{})}
	a, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	created := createInBackground(a, "acme")
	token := <-g.reached // A stored the account; its push is under way
	pub := mustClaims(t, token).Subject
	waitAccount(t, b, pub)
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("by b")}); err != nil {
		t.Fatal(err)
	}
	close(g.released)
	if err := <-created; err == nil {
		t.Fatal("the create should have failed")
	}
	// A pass of either reconciler does not change the outcome.
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	cur, err := st.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Live() {
		t.Errorf("the store holds the failed create live (%q), A's caller was told it failed", mustClaims(t, cur.JWT).Description)
	}
	noLiveCopy(t, lookupAll(t, rawResolver(t, env), pub), "the failed create is live on a server")
}

// dropTombstone fails the first write of a tombstone as unavailable
// without storing it: a request that never reached the stream leader (a
// KV failover), which the store cannot tell from a lost acknowledgement.
type dropTombstone struct {
	*kvstore.Store
	armed atomic.Bool
}

func (d *dropTombstone) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if !a.Live() && d.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("kvstore: update account %s: %w: %w", a.PublicKey, provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return d.Store.UpdateAccount(ctx, a, rev)
}

// TestAbandonTombstoneUnavailable: a create's push fails (not sent), and
// the write of the tombstone that takes it back fails as unavailable,
// without having landed. The caller is told the create failed; the
// failed create must not stay live in the store, where any instance's
// reconciler pushes it live to the servers.
func TestAbandonTombstoneUnavailable(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	dt := &dropTombstone{Store: st}
	dt.armed.Store(true)
	rc := rawResolver(t, env)
	g := &notSentAfterHold{Resolver: rc, reached: make(chan string, 1), released: make(chan struct{})}
	close(g.released)
	a := domainOver(t, env, dt, g)
	ctx := context.Background()
	if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err == nil {
		t.Fatal("the create should have failed")
	}
	pub := mustClaims(t, <-g.reached).Subject
	if dt.armed.Load() {
		t.Fatal("no tombstone was written")
	}
	// Another instance's reconciler, which knows nothing of A's failure.
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := st.AccountLatest(ctx, pub); err == nil && cur.Live() {
		t.Errorf("the store holds the failed create live; its caller was told it failed")
	}
	noLiveCopy(t, lookupAll(t, rc, pub), "the failed create is live on a server")
}

// fullOnRemove fails the first RemoveAccount as a full disk does: with
// ErrFull, having changed nothing.
type fullOnRemove struct {
	*filestore.Store
	armed atomic.Bool
}

func (f *fullOnRemove) RemoveAccount(ctx context.Context, pub string, rev uint64) error {
	if f.armed.CompareAndSwap(true, false) {
		return fmt.Errorf("filestore: remove account %s: %w: the disk of store_dir has no room", pub, provision.ErrFull)
	}
	return f.Store.RemoveAccount(ctx, pub, rev)
}

// TestAbandonRemoveFailsOnFileStore: with the file store, a create whose
// push was not sent is forgotten; when that removal fails (the disk full
// for a moment), the failed create stays live in the store. The
// reconciler must take it back, not push it live to the servers while
// the create's caller was told it failed.
func TestAbandonRemoveFailsOnFileStore(t *testing.T) {
	d, svc, pub := failedFileCreate(t)
	ctx := context.Background()
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := d.store.Account(ctx, pub); err == nil && cur.Live() {
		t.Errorf("the store holds the failed create live after a reconcile pass; its caller was told it failed")
	}
	noLiveCopy(t, d.lookupAll(t, pub), "the reconciler pushed the failed create live")
}

// dropPutBack, once armed, fails the second account write (the put-back
// after a change's failed push; the first is the change) as unavailable
// without storing it.
type dropPutBack struct {
	*kvstore.Store
	armed atomic.Bool
	n     atomic.Int32
}

func (d *dropPutBack) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if d.armed.Load() && d.n.Add(1) == 2 {
		return 0, fmt.Errorf("kvstore: update account %s: %w: %w", a.PublicKey, provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return d.Store.UpdateAccount(ctx, a, rev)
}

// notSentOnce, once armed, fails one push as never sent.
type notSentOnce struct {
	provision.Resolver
	armed atomic.Bool
}

func (r *notSentOnce) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.armed.CompareAndSwap(true, false) {
		return provision.PushResult{}, provision.ErrNotSent
	}
	return r.Resolver.Update(ctx, token)
}

// TestPutBackUnavailable: an update's push fails (never sent), and the
// put-back of the previous version fails as unavailable without having
// landed. The caller is told the update failed: the failed change must
// not stay in the store, where any instance's reconciler pushes it.
func TestPutBackUnavailable(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	dp := &dropPutBack{Store: st}
	rc := rawResolver(t, env)
	r := &notSentOnce{Resolver: rc}
	a := domainOver(t, env, dp, r)
	ctx := context.Background()
	created, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	dp.armed.Store(true)
	r.armed.Store(true)
	if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("failed change")}); err == nil {
		t.Fatal("the update should have failed")
	}
	if dp.n.Load() < 2 {
		t.Fatal("no put-back was written")
	}
	// Another instance's reconciler, which knows nothing of A's failure.
	waitAccount(t, b, pub)
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := st.AccountLatest(ctx, pub); err != nil || mustClaims(t, cur.JWT).Description == "failed change" {
		t.Errorf("the store holds the failed change (%v); its caller was told it failed", err)
	}
	for _, cp := range lookupAll(t, rc, pub) {
		if cp != "" && mustClaims(t, cp).Description == "failed change" {
			t.Errorf("the failed change is on a server")
		}
	}
}

// domainOver starts a domain of env's deployment on store and r (wrapped
// to inject faults), closed at the end of the test.
func domainOver(t *testing.T, env *provtest.Env, store provision.Store, r provision.Resolver) *provision.Service {
	t.Helper()
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := provision.New(provision.Config{Operator: op, Store: store, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// lookupAll returns every server's copy of the account ("" for none).
func lookupAll(t *testing.T, rc *resolver.Client, pub string) []string {
	t.Helper()
	copies, err := rc.LookupAll(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	return copies
}

// noLiveCopy fails the test, saying what, when a server holds a version
// of the account that is not disabled.
func noLiveCopy(t *testing.T, copies []string, what string) {
	t.Helper()
	for _, cp := range copies {
		if cp == "" {
			continue
		}
		if _, off := mustClaims(t, cp).Revocations[jwt.All]; !off {
			t.Errorf("%s (%q)", what, mustClaims(t, cp).Description)
		}
	}
}

// TestAbandonedCreatePushedByALaterChangeIsNotForgotten: with the file
// store, a create whose push was not sent is forgotten; that removal
// fails, so the failed create is remembered as one no server holds. A
// later change of the account on the same instance (an update by someone
// who read it in the store; an operator key rotation re-signs it the same
// way) pushes it live to the servers. The next pass's take-back must not
// forget the keys of an account the servers hold live: that left it live
// on them for good, an orphan no pass ever disables.
func TestAbandonedCreatePushedByALaterChangeIsNotForgotten(t *testing.T) {
	t.Parallel()
	d, svc, pub := failedFileCreate(t)
	ctx := context.Background()
	if _, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("later")}); err != nil {
		t.Fatal(err)
	}
	live := func() bool { return heldLive(t, d.lookupAll(t, pub)) }
	if !live() {
		t.Fatal("the update did not push the account live")
	}
	var orphans []string
	for range 2 {
		rep, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		orphans = rep.Orphans
	}
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) && live() {
		t.Errorf("the store forgot the account's keys while a server holds it live (orphans %v)", orphans)
	}
}

// unavailableWrites, once armed, fails the account writes that match for
// a while as unavailable without storing them, at once, as JetStream does
// while a stream has no leader (503); reads go on working (direct gets
// answered by a replica). It counts the failed writes.
type unavailableWrites struct {
	*kvstore.Store
	match  func(provision.Account) bool
	until  atomic.Pointer[time.Time]
	failed atomic.Int32
}

func (u *unavailableWrites) arm(d time.Duration) {
	until := time.Now().Add(d)
	u.until.Store(&until)
}

func (u *unavailableWrites) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if until := u.until.Load(); until != nil && time.Now().Before(*until) && u.match(a) {
		u.failed.Add(1)
		return 0, fmt.Errorf("kvstore: update account %s: %w: %w", a.PublicKey, provision.ErrUnavailable, jetstream.ErrNoStreamResponse)
	}
	return u.Store.UpdateAccount(ctx, a, rev)
}

// maxWritesInAnOutage bounds the writes of a put-back or take-back over
// the second of an outage: written again after a pause, not in a loop at
// full speed against a cluster electing a stream leader.
const maxWritesInAnOutage = 20

// TestPutBackPausesWhileTheStoreIsUnavailable: an update's push fails,
// and the put-back meets a store that answers unavailable at once for a
// second (a stream leader election) while reads still work. The put-back
// is written again until it lands, but not in a loop at full speed.
func TestPutBackPausesWhileTheStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	u := &unavailableWrites{Store: st}
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rc := rawResolver(t, env)
	r := &notSentOnce{Resolver: rc}
	a, err := provision.New(provision.Config{Operator: op, Store: u, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	created, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	// The change is written; its put-back, without the description, is not.
	u.match = func(a provision.Account) bool { return mustClaims(t, a.JWT).Description == "" }
	u.arm(time.Hour)
	r.armed.Store(true)
	go func() {
		// The put-back's first write fails; the store comes back a second
		// later.
		for u.failed.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
		u.arm(time.Second)
	}()
	if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("failed change")}); err == nil {
		t.Fatal("the update should have failed")
	}
	if cur, err := st.AccountLatest(ctx, pub); err != nil || mustClaims(t, cur.JWT).Description == "failed change" {
		t.Fatalf("the store holds the failed change (%v)", err)
	}
	if n := u.failed.Load(); n > maxWritesInAnOutage {
		t.Errorf("the put-back was written %d times in a second's outage; want at most %d", n, maxWritesInAnOutage)
	}
}

// TestTakeBackPausesWhileTheStoreIsUnavailable: a create's push is not
// sent, and the tombstone that takes it back meets a store that answers
// unavailable at once for a second. It is written again until it lands,
// but not in a loop at full speed.
func TestTakeBackPausesWhileTheStoreIsUnavailable(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	u := &unavailableWrites{Store: st, match: func(a provision.Account) bool { return !a.Live() }}
	u.arm(time.Second)
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rc := rawResolver(t, env)
	g := &notSentAfterHold{Resolver: rc, reached: make(chan string, 1), released: make(chan struct{})}
	close(g.released)
	a, err := provision.New(provision.Config{Operator: op, Store: u, Resolver: g, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err == nil {
		t.Fatal("the create should have failed")
	}
	pub := mustClaims(t, <-g.reached).Subject
	if cur, err := st.AccountLatest(ctx, pub); err != nil || cur.Live() {
		t.Fatalf("the failed create is live in the store (%v)", err)
	}
	if n := u.failed.Load(); n > maxWritesInAnOutage {
		t.Errorf("the tombstone was written %d times in a second's outage; want at most %d", n, maxWritesInAnOutage)
	}
}

// lookedUp signals on looked each LOOKUP of every server for an account.
type lookedUp struct {
	provision.Resolver
	looked chan string
}

func (l *lookedUp) LookupAll(ctx context.Context, pub string) ([]string, error) {
	copies, err := l.Resolver.LookupAll(ctx, pub)
	select {
	case l.looked <- pub:
	default:
	}
	return copies, err
}

// TestAbandonedDuringAPassIsNotPushedByIt: with the file store, a pass
// finds a new account in the store and on no server while its create's
// push is under way; it waits for the account's lock to push it. The
// push fails as not sent, and the removal that takes the create back
// fails (the disk full for a moment). The pass, once it has the lock,
// must not push the failed create live: no pass pushes one, and the next
// pass's take-back, which takes it for one no server holds, forgets its
// keys and leaves it live on the servers, an orphan.
func TestAbandonedDuringAPassIsNotPushedByIt(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	fr := &fullOnRemove{Store: d.store}
	fr.armed.Store(true)
	g := &notSentAfterHold{Resolver: d.rc, reached: make(chan string, 1), released: make(chan struct{})}
	l := &lookedUp{Resolver: g, looked: make(chan string, 16)}
	svc, err := provision.New(provision.Config{Operator: d.op, Store: fr, Resolver: l, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := context.Background()
	created := createInBackground(svc, "acme")
	pub := mustClaims(t, <-g.reached).Subject // stored; its push held
	passed := make(chan error, 1)
	go func() {
		_, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		passed <- err
	}()
	for looked := ""; looked != pub; {
		select {
		case looked = <-l.looked:
		case <-time.After(10 * time.Second):
			t.Fatal("the pass did not look the account up")
		}
	}
	// The pass found it on no server; it waits for the lock to push it.
	time.Sleep(100 * time.Millisecond)
	close(g.released)
	if err := <-created; err == nil {
		t.Fatal("the create should have failed")
	}
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	live := func() bool { return heldLive(t, d.lookupAll(t, pub)) }
	if live() {
		t.Errorf("the pass pushed the failed create live")
	}
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) && live() {
		t.Errorf("the store forgot the failed create's keys while a server holds it live")
	}
}

// failedFileCreate starts a domain on a file store deployment whose first
// removal fails as a full disk does, and makes a create there whose push
// is never sent: the create fails, and its removal too, so the failed
// create stays in the store. It returns the deployment's domain, the
// service over the faulty store, and the account.
func failedFileCreate(t *testing.T) (*domain, *provision.Service, string) {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	t.Cleanup(d.stop)
	fr := &fullOnRemove{Store: d.store}
	fr.armed.Store(true)
	g := &notSentAfterHold{Resolver: d.rc, reached: make(chan string, 1), released: make(chan struct{})}
	close(g.released)
	svc, err := provision.New(provision.Config{Operator: d.op, Store: fr, Resolver: g, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	if _, err := svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err == nil {
		t.Fatal("the create should have failed")
	}
	pub := mustClaims(t, <-g.reached).Subject
	if fr.armed.Load() {
		t.Fatal("the failed create was not removed")
	}
	return d, svc, pub
}

// heldLive reports whether a server holds a version of the account that is
// not disabled.
func heldLive(t *testing.T, copies []string) bool {
	t.Helper()
	for _, cp := range copies {
		if cp == "" {
			continue
		}
		if _, off := mustClaims(t, cp).Revocations[jwt.All]; !off {
			return true
		}
	}
	return false
}

// createInBackground starts a create of an account named name on svc in a
// goroutine of its own; its outcome comes on the channel returned.
func createInBackground(svc *provision.Service, name string) <-chan error {
	created := make(chan error, 1)
	go func() {
		_, err := svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: name})
		created <- err
	}()
	return created
}

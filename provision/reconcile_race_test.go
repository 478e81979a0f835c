package provision_test

import (
	"context"
	"errors"
	"os"
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

// notSentAfterHold holds the first push until released, then fails it as
// never sent (the instance's NATS connection was down): no server can hold
// it, as far as this instance knows.
type notSentAfterHold struct {
	provision.Resolver
	n        atomic.Int32
	reached  chan string
	released chan struct{}
}

func (r *notSentAfterHold) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.n.Add(1) == 1 {
		r.reached <- token
		<-r.released
		return provision.PushResult{}, provision.ErrNotSent
	}
	return r.Resolver.Update(ctx, token)
}

// TestAbandonedCreatePushedByPeerReconciler: instance A stores a new
// account; its push is under way (and will fail as not sent). Instance B's
// reconciler finds the account in the store and on no server, and pushes
// it (the account lock is A's alone). A's push then fails as not sent: A
// takes it that no server holds the account and removes it from the store.
// The live version B pushed stays on the server, an orphan nothing ever
// disables: an abandoned create left live.
func TestAbandonedCreatePushedByPeerReconciler(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	g := &notSentAfterHold{reached: make(chan string, 1), released: make(chan struct{})}
	a, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	created := createInBackground(a, "acme")
	token := <-g.reached // A stored the account; its push is under way
	c, _ := jwt.DecodeAccountClaims(token)
	pub := c.Subject
	waitAccount(t, b, pub)
	rep, err := b.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("B's pass: pushed=%d", rep.Pushed)
	close(g.released)
	if err := <-created; err == nil {
		t.Fatal("the create should have failed")
	}
	_, serr := st.AccountLatest(ctx, pub)
	copies, err := rawResolver(t, env).LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		if cp == "" {
			continue
		}
		cc, err := jwt.DecodeAccountClaims(cp)
		if err != nil {
			t.Fatal(err)
		}
		if _, off := cc.Revocations[jwt.All]; !off {
			t.Errorf("the failed create is live on a server (store: %v); nothing will ever disable it", serr)
		}
	}
	// And the reconciler now calls it an orphan and leaves it alone.
	rep, err = b.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if errors.Is(serr, provision.ErrNotFound) {
		t.Logf("next pass: orphans=%v", rep.Orphans)
	}
}

// silentList answers LIST as if the (only) server had not answered in
// time: an up server missing from the map, no error.
type silentList struct {
	provision.Resolver
	on atomic.Bool
}

func (r *silentList) List(ctx context.Context) (map[string][]string, error) {
	m, err := r.Resolver.List(ctx)
	if r.on.Load() {
		return map[string][]string{}, err
	}
	return m, err
}

// TestTombstoneRemovedWhileAServerMissedList: a deleted account is back on
// a server (restored from an old disk) whose LIST reply does not arrive in
// time. The pass takes "not in the LIST replies" for "on no server" and
// removes the tombstone past its retention; from then on the live account
// is an orphan, left alone: a deleted account brought back.
func TestTombstoneRemovedWhileAServerMissedList(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	sl := &silentList{}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { sl.Resolver = r; return sl },
		func(c *provision.Config) { c.TombstoneRetention = time.Nanosecond })
	defer d.stop()
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live := acc.Account.PublicKey, acc.Account.JWT
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil || rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete: %v %+v", err, rep)
	}
	// The server comes back from an old disk: it holds the live version.
	if _, err := d.rc.Update(ctx, live); err != nil {
		t.Fatal(err)
	}
	if got := d.lookupAll(t, pub); len(got) != 1 || got[0] != live {
		t.Fatalf("setup: the server does not hold the live version again")
	}
	time.Sleep(1100 * time.Millisecond) // past the retention
	sl.on.Store(true)                   // its LIST reply is late
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	sl.on.Store(false)
	r2, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.lookupAll(t, pub); len(got) == 1 && got[0] == live {
		t.Errorf("the deleted account is live on the server again; the store forgot it (orphans: %v)", r2.Orphans)
	}
}

// TestExpiredAccountLeftLiveOnRestoredServer: an account is given an
// expiry; its server is then restored from a disk older than that change,
// so it holds the version without an expiry. Once the store's version has
// expired, the reconciler skips the account (no LOOKUP, no push): the
// server keeps the older version for good, and the account's users keep
// connecting.
func TestExpiredAccountLeftLiveOnRestoredServer(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "u"})
	jwtDir := filepath.Join(env.Dir, bootstrap.ResolverDir)
	backup := filepath.Join(t.TempDir(), "jwt")
	env.Server.Stop()
	if err := os.CopyFS(backup, os.DirFS(jwtDir)); err != nil {
		t.Fatal(err)
	}
	env.Restart(t)
	waitUp(t, d)
	upd, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, ExpiresIn: ptr("2s")})
	if err != nil {
		t.Fatal(err)
	}
	exp := mustClaims(t, upd.Account.JWT).Expires
	// The server is restored from the old disk.
	env.Server.Stop()
	if err := os.RemoveAll(jwtDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(jwtDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	env.Restart(t)
	waitUp(t, d)
	// The store's version has expired once its exp (a Unix second,
	// rounded up at the update) has begun: a fixed 2.5 s from here left
	// the pass before it when the restore took less than half a second
	// and the update came early in its second; the pass, finding the
	// account unexpired, pushed it, and the test passed without checking
	// the expired account.
	time.Sleep(time.Until(time.Unix(exp, 0).Add(50 * time.Millisecond)))
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, cp := range d.lookupAll(t, pub) {
		c, err := jwt.DecodeAccountClaims(cp)
		if err != nil {
			t.Fatal(err)
		}
		if c.Expires == 0 {
			t.Errorf("after a pass the server still holds a version without the expiry the store's has (user connects: %v)", connects(env, creds))
		}
	}
}

// waitUp waits until the domain's resolver client sees a server up again.
func waitUp(t *testing.T, d *domain) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := d.rc.LookupAll(context.Background(), d.env.Init.ServiceAccount); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no server up again")
}

// holdThenNotSent holds push number at (1-based) until released, then
// fails it as never sent.
type holdThenNotSent struct {
	provision.Resolver
	n        atomic.Int32
	at       int32
	reached  chan string
	released chan struct{}
}

func (r *holdThenNotSent) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.n.Add(1) == r.at {
		r.reached <- token
		<-r.released
		return provision.PushResult{}, provision.ErrNotSent
	}
	return r.Resolver.Update(ctx, token)
}

// holdDelete holds the first DELETE until released.
type holdDelete struct {
	provision.Resolver
	n        atomic.Int32
	reached  chan struct{}
	released chan struct{}
}

func (r *holdDelete) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	if r.n.Add(1) == 1 {
		r.reached <- struct{}{}
		<-r.released
	}
	return r.Resolver.Delete(ctx, token)
}

// TestDeleteFinishedOverARestore: instance A deletes an account, and its
// push of the disabled version is held, then fails as never sent. Instance
// B's reconciler meanwhile finds the tombstone, pushes the disabled
// version itself and sends the DELETE, which is held while A puts the live
// version back in the store (A's delete failed). B's DELETE then takes the
// account from the servers, and its record of the finished delete loses
// to A's put-back. The servers must get the store's live version again at
// once, not when the next pass finds it missing.
func TestDeleteFinishedOverARestore(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ga := &holdThenNotSent{at: 2, reached: make(chan string, 1), released: make(chan struct{})}
	a, _ := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { ga.Resolver = r; return ga })
	gb := &holdDelete{reached: make(chan struct{}, 1), released: make(chan struct{})}
	b, stb := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { gb.Resolver = r; return gb })
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	deleted := make(chan error, 1)
	go func() {
		_, err := a.DeleteAccount(ctx, api.AccountRequest{Account: pub})
		deleted <- err
	}()
	<-ga.reached // A stored the tombstone; its push is held
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := stb.AccountLatest(ctx, pub)
		if err == nil && cur.Phase == provision.PhaseDisabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never sees the tombstone: %+v %v", cur.Phase, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	passed := make(chan error, 1)
	go func() {
		_, err := b.Reconcile(ctx, api.ReconcileRequest{})
		passed <- err
	}()
	select {
	case <-gb.reached: // B pushed the disabled version; its DELETE is held
	case err := <-passed:
		t.Fatalf("B's pass ended without a DELETE: %v", err)
	}
	close(ga.released)
	if err := <-deleted; err == nil {
		t.Fatal("A's delete should have failed")
	}
	cur, err := stb.AccountLatest(ctx, pub)
	if err != nil || !cur.Live() {
		t.Fatalf("the store after A's put-back: %+v %v, want the account live", cur.Phase, err)
	}
	close(gb.released)
	if err := <-passed; err != nil {
		t.Fatal(err)
	}
	copies, err := rawResolver(t, env).LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) == 0 {
		t.Fatal("no server answered the LOOKUP")
	}
	for _, cp := range copies {
		switch c, err := jwt.DecodeAccountClaims(cp); {
		case cp == "":
			t.Error("a server holds no copy of the account, which the store holds live: the DELETE won")
		case err != nil:
			t.Errorf("a server's copy: %v", err)
		case cp != cur.JWT:
			t.Errorf("a server holds iat %d, not the store's live version (iat %d)", c.IssuedAt, mustClaims(t, cur.JWT).IssuedAt)
		}
	}
}

func mustClaims(t *testing.T, token string) *jwt.AccountClaims {
	t.Helper()
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFailedUpdatePushedByPeerReconciler: instance A's update is stored and
// its push held, then failed as never sent, so A puts the previous content
// back in the store. Instance B's reconciler meanwhile found the update in
// the store and on no server, and pushed it. The servers must not keep the
// failed update once A's put-back is done.
func TestFailedUpdatePushedByPeerReconciler(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ga := &holdThenNotSent{at: 2, reached: make(chan string, 1), released: make(chan struct{})}
	a, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { ga.Resolver = r; return ga })
	b, stb := kvDomain(t, env, nil)
	ctx := context.Background()
	pub, updated := createThenUpdate(t, a, "failed")
	failed := <-ga.reached // A stored the update; its push is held
	deadline := time.Now().Add(5 * time.Second)
	for {
		cur, err := stb.AccountLatest(ctx, pub)
		if err == nil && cur.JWT == failed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never sees the update: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rep, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil || rep.Pushed == 0 {
		t.Fatalf("B's pass: %+v %v, want the update pushed", rep, err)
	}
	close(ga.released)
	if err := <-updated; err == nil {
		t.Fatal("A's update should have failed")
	}
	cur, err := st.AccountLatest(ctx, pub)
	if err != nil || mustClaims(t, cur.JWT).Description == "failed" {
		t.Fatalf("the store after A's put-back: %v, want the previous content", err)
	}
	copies, err := rawResolver(t, env).LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		if cp != cur.JWT {
			t.Errorf("a server holds %q, not the store's version after the put-back", mustClaims(t, cp).Description)
		}
	}
}

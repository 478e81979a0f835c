package provision_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// restartAfterPush, once armed, restarts the server from an old disk
// (restart) after the next push's replies came back, and returns them only
// once Run has handled the server's return (forgetServer): the pass that
// follows (its LIST) is held until released.
type restartAfterPush struct {
	provision.Resolver
	armed    atomic.Bool
	restart  func()        // restarts the server
	handled  chan struct{} // closed at the first LIST after newID joined
	once     sync.Once
	released chan struct{}
	joined   chan provision.Server
	start    sync.Once
	lists    atomic.Int32
	hold     atomic.Bool
	// restarting is set once the restart begins: the server's next
	// return is its new instance.
	restarting atomic.Bool
}

func (r *restartAfterPush) Joined() <-chan provision.Server {
	r.start.Do(func() {
		in := r.Resolver.Joined()
		go func() {
			for srv := range in {
				// Taken by Run, which forgets the server, then passes:
				// that pass's LIST is held.
				if r.restarting.Load() {
					r.hold.Store(true)
				}
				r.joined <- srv
			}
		}()
	})
	return r.joined
}

func (r *restartAfterPush) List(ctx context.Context) (map[string][]string, error) {
	r.lists.Add(1)
	if r.hold.Load() {
		r.once.Do(func() { close(r.handled) })
		<-r.released
	}
	return r.Resolver.List(ctx)
}

func (r *restartAfterPush) Update(ctx context.Context, token string) (provision.PushResult, error) {
	res, err := r.Resolver.Update(ctx, token)
	if !r.armed.CompareAndSwap(true, false) {
		return res, err
	}
	r.restarting.Store(true)
	r.restart()
	<-r.handled
	return res, err
}

func newRestartAfterPush() *restartAfterPush {
	return &restartAfterPush{handled: make(chan struct{}), released: make(chan struct{}), joined: make(chan provision.Server)}
}

// restartFromOldDisk starts a domain on env whose resolver is outer, w
// (outer's restartAfterPush) wrapping the real one, and w's restart brings
// the server back from the disk it had once account acme was created
// (holding acme live); it creates acme, starts Run and makes a pass.
// release lets the held pass go on; done (which the caller defers)
// releases it, ends Run and stops the domain.
func restartFromOldDisk(t *testing.T, env *provtest.Env, w *restartAfterPush, outer provision.Resolver, tune ...func(*provision.Config)) (d *domain, pub, live string, release, done func()) {
	t.Helper()
	set := false
	defer func() {
		if !set && done != nil { // a Fatal below
			done()
		}
	}()
	jwtDir := filepath.Join(env.Dir, bootstrap.ResolverDir)
	backup := filepath.Join(t.TempDir(), "jwt")
	var releaseOnce sync.Once
	release = func() { releaseOnce.Do(func() { close(w.released) }) }
	w.restart = func() {
		env.Server.Stop()
		if err := os.RemoveAll(jwtDir); err != nil {
			t.Error(err)
		}
		if err := os.CopyFS(jwtDir, os.DirFS(backup)); err != nil {
			t.Error(err)
		}
		env.Restart(t)
		waitUp(t, d)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if s := d.rc.Servers(); len(s) == 1 && s[0].Up && s[0].ID == env.Server.ID() {
				return
			}
		}
		t.Error("the client does not see the restarted server")
	}
	d = newDomain(t, env, func(r provision.Resolver) provision.Resolver { w.Resolver = r; return outer }, append([]func(*provision.Config){func(c *provision.Config) {
		c.ReconcileInterval = time.Hour
	}}, tune...)...)
	done = d.stop
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live = acc.Account.PublicKey, acc.Account.JWT
	// The old disk: the server holds the account live.
	if err := os.CopyFS(backup, os.DirFS(jwtDir)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.svc.Run(runCtx)
	}()
	done = func() { release(); stop(); <-ran; d.stop() }
	// Run's first pass, then one of the test's: Run waits for a server
	// to join.
	for deadline := time.Now().Add(10 * time.Second); w.lists.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Run started no pass")
		}
	}
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	set = true
	return d, pub, live, release, done
}

// TestDeleteWaitsForAServerRestartedAfterItsConfirmation: the server
// stores a deleted account's disabled version and restarts from an old
// disk (holding the live version) before the push's replies are noted,
// Run forgetting what it confirmed in between. The reply of its old
// instance counted for the new one: the delete (allow_delete off) was
// final, "deleted", while the server held the account live.
func TestDeleteWaitsForAServerRestartedAfterItsConfirmation(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	w := newRestartAfterPush()
	d, pub, live, release, done := restartFromOldDisk(t, env, w, w)
	defer done()
	ctx := context.Background()
	w.armed.Store(true)
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	copies := d.lookupAll(t, pub)
	release()
	if rep.Phase == string(provision.PhaseDeleted) && slices.Contains(copies, live) {
		t.Errorf("delete: phase deleted while the restarted server holds the account live (waiting %v)", rep.Waiting)
	}
}

// restartAfterDelete, once armed, restarts the server from an old disk
// after the next DELETE's replies came back, and returns them only once Run
// has handled the server's return (see restartAfterPush).
type restartAfterDelete struct {
	*restartAfterPush
	armedDelete atomic.Bool
}

func (r *restartAfterDelete) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	res, err := r.Resolver.Delete(ctx, token)
	if !r.armedDelete.CompareAndSwap(true, false) {
		return res, err
	}
	r.restarting.Store(true)
	r.restart()
	<-r.handled
	return res, err
}

// TestDeleteWaitsForAServerRestartedAfterItsDelete: the server carries out
// a deleted account's DELETE and restarts from an old disk (holding the
// live version) before the DELETE's replies are noted, Run forgetting
// what it confirmed in between. The check that every server carried out
// the DELETE read the replies by server name: its old instance's reply
// made the delete final, "deleted", while the new one held the account
// live.
func TestDeleteWaitsForAServerRestartedAfterItsDelete(t *testing.T) {
	t.Parallel()
	deleteRestartedAfterDelete(t, bootstrap.Options{})
}

// TestRefusedDeleteWaitsForAServerRestartedMeanwhile: as above, where
// servers do not allow deletes: the refused DELETE made the disabled
// version the end state, "deleted", without asking again whether every
// server still confirmed it, while the restarted server held the account
// live.
func TestRefusedDeleteWaitsForAServerRestartedMeanwhile(t *testing.T) {
	t.Parallel()
	deleteRestartedAfterDelete(t, bootstrap.Options{NoDelete: true})
}

func deleteRestartedAfterDelete(t *testing.T, opts bootstrap.Options) {
	env := provtest.Deployment(t, opts)
	w := &restartAfterDelete{restartAfterPush: newRestartAfterPush()}
	d, pub, live, release, done := restartFromOldDisk(t, env, w.restartAfterPush, w)
	defer done()
	ctx := context.Background()
	w.armedDelete.Store(true)
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	copies := d.lookupAll(t, pub)
	release()
	if !slices.Contains(copies, live) {
		t.Fatalf("the restarted server does not hold the account live: %v", copies)
	}
	if rep.Phase == string(provision.PhaseDeleted) {
		t.Errorf("delete: phase deleted while the restarted server holds the account live (waiting %v)", rep.Waiting)
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// lookupCounter counts LOOKUPs sent to every server while on is set.
type lookupCounter struct {
	provision.Resolver
	on *atomic.Bool
	n  atomic.Int64
}

func (l *lookupCounter) LookupAll(ctx context.Context, pub string) ([]string, error) {
	if l.on.Load() {
		l.n.Add(1)
	}
	return l.Resolver.LookupAll(ctx, pub)
}

// leaseDomain is a service on env's KV store that reconciles under the
// store's lease, with a reconcile interval of interval and rate LOOKUPs a
// second.
func leaseDomain(t *testing.T, env *provtest.Env, instance string, interval time.Duration, rate int, wrap func(provision.Resolver) provision.Resolver) *provision.Service {
	t.Helper()
	svc, _ := kvDomainOf(t, env, instance, wrap, func(c *provision.Config) {
		c.Leader = c.Store.(provision.Leader)
		c.ReconcileInterval, c.ReconcileRate = interval, rate
	})
	return svc
}

// TestLongPassKeepsTheLease: a pass that lasts longer than the reconciler
// lease's ttl (3 reconcile intervals: here 10 accounts at 2 LOOKUPs a
// second against a 3 s lease; in production a pass over a slow server,
// or over more accounts than reconcile_rate checks in 90 s) never renewed
// the lease it took at its start. Another instance took it over while the
// pass went on, and both reconciled at once.
func TestLongPassKeepsTheLease(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	var aOn, bOn atomic.Bool
	la := &lookupCounter{on: &aOn}
	lb := &lookupCounter{on: &bOn}
	// Not 300 ms: a pass is cut 2.5 intervals after the last renewal it
	// asked for, and a renewal answered 450 ms late (CI, loaded, -race)
	// cut A's pass, and the test passed on a pass that lost its lease.
	const interval = time.Second
	a := leaseDomain(t, env, "a", interval, 2, func(r provision.Resolver) provision.Resolver { la.Resolver = r; return la })
	b := leaseDomain(t, env, "b", interval, 2, func(r provision.Resolver) provision.Resolver { lb.Resolver = r; return lb })
	ctx := context.Background()
	createAccounts(t, a, 10)
	// A's long pass.
	aOn.Store(true)
	aDone := reconcileInBackground(t, a)
	// Wait until A's pass is under way (it LOOKUPs, so it holds the lease).
	for la.n.Load() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	// B tries the lease as its Run loop does, every interval, while A's pass runs.
	bOn.Store(true)
	var bRan int
	for {
		select {
		case rep := <-aDone:
			t.Logf("A's pass: %+v", rep)
			if bRan > 0 || lb.n.Load() > 0 {
				t.Fatalf("B reconciled %d passes (%d LOOKUPs) while A's pass ran", bRan, lb.n.Load())
			}
			if rep.Skipped != "" || rep.Checked != 10 {
				t.Fatalf("A's pass did not keep its lease to the end (checked %d of 10): %q", rep.Checked, rep.Skipped)
			}
			return
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rep, err := b.Reconcile(rctx, api.ReconcileRequest{})
		cancel()
		if err != nil {
			t.Logf("B's pass: %v", err)
		} else if rep.Skipped == "" {
			bRan++
			t.Logf("B's pass ran while A's did: %+v", rep)
		}
		time.Sleep(interval)
	}
}

// hangingLeader passes the first TryLease on; every later one hangs for
// hang (a bucket that does not answer, until the store's Timeout), then
// fails unavailable.
type hangingLeader struct {
	provision.Leader
	hang  time.Duration
	calls atomic.Int64
	first atomic.Int64 // unix nanos of the first call
	// ended holds why the last hanging call ended: context.Cause of its
	// context, or errHangElapsed.
	ended atomic.Value
}

var errHangElapsed = errors.New("hang elapsed")

func (h *hangingLeader) TryLease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if h.calls.Add(1) == 1 {
		h.first.Store(time.Now().UnixNano())
		return h.Leader.TryLease(ctx, name, ttl)
	}
	select {
	case <-time.After(h.hang):
		h.ended.Store(errHangElapsed)
	case <-ctx.Done():
		h.ended.Store(context.Cause(ctx))
	}
	return false, fmt.Errorf("renew lease: %w: bucket away", provision.ErrUnavailable)
}

// lastLookup records when the last LOOKUP was sent.
type lastLookup struct {
	provision.Resolver
	at atomic.Int64
}

func (l *lastLookup) LookupAll(ctx context.Context, pub string) ([]string, error) {
	l.at.Store(time.Now().UnixNano())
	return l.Resolver.LookupAll(ctx, pub)
}

// TestPassStopsWhenItsLeaseEnds: a pass whose renewals hang (the bucket
// away, each call until the store's 5 s Timeout) stops by the end of the
// lease it holds (3 reconcile intervals from its TryLease), when another
// instance may take the lease over. It went on until a renewal returned.
func TestPassStopsWhenItsLeaseEnds(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	const interval = time.Second
	ll := &lastLookup{}
	hl := &hangingLeader{hang: 5 * time.Second}
	a, _ := kvDomainOf(t, env, "a", func(r provision.Resolver) provision.Resolver { ll.Resolver = r; return ll }, func(c *provision.Config) {
		hl.Leader = c.Store.(provision.Leader)
		c.Leader = hl
		c.ReconcileInterval, c.ReconcileRate = interval, 2
	})
	ctx := context.Background()
	for i := range 20 {
		if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acc%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := a.Reconcile(rctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pass: %+v", rep)
	end := time.Unix(0, hl.first.Load()).Add(3 * interval)
	if last := time.Unix(0, ll.at.Load()); last.After(end) {
		t.Fatalf("the pass sent a LOOKUP %v after its lease ended", last.Sub(end))
	}
	if rep.Skipped == "" {
		t.Fatalf("the pass did not say it stopped with its lease: %+v", rep)
	}
}

// pausingLeader passes TryLease on, and after the first it blocks until
// resume is called: a holder stopped (SIGSTOP, a GC pause, a suspended VM)
// right after it took the lease.
type pausingLeader struct {
	provision.Leader
	calls   atomic.Int64
	resumed chan struct{}
	once    sync.Once
}

func (p *pausingLeader) TryLease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	held, err := p.Leader.TryLease(ctx, name, ttl)
	if p.calls.Add(1) == 1 {
		<-p.resumed
	}
	return held, err
}

// resume lets the paused first TryLease answer.
func (p *pausingLeader) resume() { p.once.Do(func() { close(p.resumed) }) }

// TestPausedHolderResumes: A takes the lease and is paused past its end;
// B takes it over and reconciles. A, resumed, does not reconcile on the
// lease it no longer holds. It did, for an interval, until its first
// renewal: the pass counted the lease from when it resumed.
//
// A stays paused until B has run a pass, not for a fixed time: B takes
// the lease over only once it has seen it unchanged for its ttl, and a
// loaded machine (CI, -race) made B's passes late enough that a pause of
// 6 intervals ended first ("B did not take over"). B's takeover itself
// puts the pause past the end of A's lease.
func TestPausedHolderResumes(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	const interval = 300 * time.Millisecond
	var aOn, bOn atomic.Bool
	la := &lookupCounter{on: &aOn}
	lb := &lookupCounter{on: &bOn}
	pl := &pausingLeader{resumed: make(chan struct{})}
	a, _ := kvDomainOf(t, env, "a", func(r provision.Resolver) provision.Resolver { la.Resolver = r; return la }, func(c *provision.Config) {
		pl.Leader = c.Store.(provision.Leader)
		c.Leader = pl
		c.ReconcileInterval, c.ReconcileRate = interval, 20
	})
	b := leaseDomain(t, env, "b", interval, 20, func(r provision.Resolver) provision.Resolver { lb.Resolver = r; return lb })
	// Run before the services' Close, which waits for A's pass.
	t.Cleanup(pl.resume)
	ctx := context.Background()
	createAccounts(t, a, 10)
	aOn.Store(true)
	bOn.Store(true)
	aDone := reconcileInBackground(t, a)
	deadline := time.Now().Add(30 * time.Second)
	for pl.calls.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("A's pass did not try the lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		rep, err := b.Reconcile(rctx, api.ReconcileRequest{})
		cancel()
		if err == nil && rep.Skipped == "" {
			t.Logf("B's pass: %+v", rep)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not take over the lease of the paused A in 30 s: %v, %+v", err, rep)
		}
		time.Sleep(interval / 3)
	}
	pl.resume()
	var rep *api.ReconcileReply
	select {
	case rep = <-aDone:
	case <-time.After(30 * time.Second):
		t.Fatal("A's pass did not end in 30 s once resumed")
	}
	t.Logf("A's pass: %+v", rep)
	if n := la.n.Load(); n > 0 {
		t.Fatalf("A, resumed past its lease, sent %d LOOKUPs", n)
	}
	if rep != nil && rep.Skipped == "" {
		t.Fatalf("A's pass, resumed past its lease, did not say it stopped: %+v", rep)
	}
}

// createAccounts makes n accounts, acc0 to acc<n-1>, through svc.
func createAccounts(t *testing.T, svc *provision.Service, n int) {
	t.Helper()
	for i := range n {
		if _, err := svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: fmt.Sprintf("acc%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// reconcileInBackground starts a pass of svc (prov.reconcile, within 30s)
// and returns where its reply comes.
func reconcileInBackground(t *testing.T, svc *provision.Service) <-chan *api.ReconcileReply {
	done := make(chan *api.ReconcileReply, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	return done
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// cutLeader passes TryLease on until cut is set; then every call fails
// unavailable at once: an instance cut off from the bucket.
type cutLeader struct {
	provision.Leader
	cut atomic.Bool
}

func (c *cutLeader) TryLease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if c.cut.Load() {
		return false, fmt.Errorf("take lease: %w: bucket away", provision.ErrUnavailable)
	}
	return c.Leader.TryLease(ctx, name, ttl)
}

// TestCutOffLeaderSaysFollower: A holds the reconciler lease, then loses
// the bucket (every TryLease fails); B takes the lease over once A's ends.
// prov.status must not have both say "leader": A, whose lease ended
// without a renewal, is a follower. A said "leader" for as long as its
// TryLease calls failed.
func TestCutOffLeaderSaysFollower(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	// Not 300 ms: an instance says "leader" until 2.5 intervals after
	// the TryLease of its pass, and the test goroutine, stalled that long
	// between the pass and the status (CI, loaded, -race), read
	// "follower" of the lease's holder (holderSays).
	const interval = time.Second
	cl := &cutLeader{}
	a, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		cl.Leader = c.Store.(provision.Leader)
		c.Leader = cl
		c.ReconcileInterval, c.ReconcileRate = interval, 20
	})
	b := leaseDomain(t, env, "b", interval, 20, nil)
	ctx := context.Background()
	role := func(s *provision.Service) string {
		st, err := s.Status(ctx, api.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st.Role
	}
	// holderSays checks that s, whose pass that started at start took or
	// renewed the lease, says "leader". It may say "follower" only once
	// the lease as it counts it ended (2.5 intervals from start: the
	// test goroutine stalled); then a pass of s renews the lease and its
	// role is read again.
	holderSays := func(who string, s *provision.Service, start time.Time) {
		t.Helper()
		for range 5 {
			r := role(s)
			if r == "leader" {
				return
			}
			if time.Since(start) < 3*interval-interval/2 {
				t.Fatalf("%s says %q", who, r)
			}
			start = time.Now()
			if rep, err := s.Reconcile(ctx, api.ReconcileRequest{}); err != nil || rep.Skipped != "" {
				t.Fatalf("%s: pass again after its lease ended unread: %+v, %v", who, rep, err)
			}
		}
		t.Fatalf("%s: its role read too late for its lease 5 times", who)
	}
	start := time.Now()
	rep, err := a.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil || rep.Skipped != "" {
		t.Fatalf("A's first pass: %+v, %v", rep, err)
	}
	holderSays("A holding the lease", a, start)
	cl.cut.Store(true)
	// A's passes fail on the lease, as its Run loop's would; B's take it
	// over once A's lease ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err == nil {
			t.Fatal("A's pass without the bucket did not fail")
		}
		start = time.Now()
		rep, err := b.Reconcile(ctx, api.ReconcileRequest{})
		if err == nil && rep.Skipped == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never took the lease over: %+v, %v", rep, err)
		}
		time.Sleep(interval / 3)
	}
	holderSays("B, which took the lease over,", b, start)
	if r := role(a); r != "follower" {
		t.Fatalf("A, cut off from the bucket past its lease while B holds it, says %q, want follower", r)
	}
}

// TestPassEndsWithoutItsHangingRenewal: a pass that has done its work
// while a renewal of its lease hangs (the bucket away, until the store's
// 5 s Timeout) ends then: its reply, and the next pass, do not wait for
// the renewal. The pass's end waited for the renewal, which ran on the
// pass's context, cancelled only after that wait: until the renewal's
// timeout or the lease's cut.
func TestPassEndsWithoutItsHangingRenewal(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	const interval = 1500 * time.Millisecond
	hl := &hangingLeader{hang: 5 * time.Second}
	a, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		hl.Leader = c.Store.(provision.Leader)
		c.Leader = hl
		c.ReconcileInterval, c.ReconcileRate = interval, 2
	})
	ctx := context.Background()
	for i := range 5 {
		if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acc%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := a.Reconcile(rctx, api.ReconcileRequest{})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pass: %+v, reply after %s", rep, took)
	if hl.calls.Load() < 2 {
		t.Fatalf("the pass (%s) ended before a renewal", rep.Duration)
	}
	if rep.Skipped != "" {
		t.Fatalf("the pass (%s) lasted past its lease: it did not end by itself: %+v", rep.Duration, rep)
	}
	// The renewal hangs until its context ends: the pass's end, or the
	// lease's cut (errLeaseLost) after the reply waited for it; not a
	// reply time against a wall-clock bound, which a loaded machine
	// stretches either way.
	switch cause, _ := hl.ended.Load().(error); {
	case cause == nil:
		t.Fatalf("the pass (%s) replied after %s with its renewal still hanging", rep.Duration, took.Round(time.Millisecond))
	case !errors.Is(cause, context.Canceled):
		t.Fatalf("the pass (%s) replied after %s, once the hanging renewal ended by %q: its end waited for the renewal", rep.Duration, took.Round(time.Millisecond), cause)
	}
}

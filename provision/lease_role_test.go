package provision_test

import (
	"context"
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
	const interval = 300 * time.Millisecond
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
	rep, err := a.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil || rep.Skipped != "" {
		t.Fatalf("A's first pass: %+v, %v", rep, err)
	}
	if r := role(a); r != "leader" {
		t.Fatalf("A holding the lease says %q", r)
	}
	cl.cut.Store(true)
	// A's passes fail on the lease, as its Run loop's would; B's take it
	// over once A's lease ends.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err == nil {
			t.Fatal("A's pass without the bucket did not fail")
		}
		rep, err := b.Reconcile(ctx, api.ReconcileRequest{})
		if err == nil && rep.Skipped == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never took the lease over: %+v, %v", rep, err)
		}
		time.Sleep(interval / 3)
	}
	if r := role(b); r != "leader" {
		t.Fatalf("B, which took the lease over, says %q", r)
	}
	if r := role(a); r != "follower" {
		t.Fatalf("A, cut off from the bucket past its lease while B holds it, says %q, want follower", r)
	}
}

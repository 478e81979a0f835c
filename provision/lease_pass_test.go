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
// second against a 900 ms lease; in production a pass over a slow server,
// or over more accounts than reconcile_rate checks in 90 s) never renewed
// the lease it took at its start. Another instance took it over while the
// pass went on, and both reconciled at once.
func TestLongPassKeepsTheLease(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	var aOn, bOn atomic.Bool
	la := &lookupCounter{on: &aOn}
	lb := &lookupCounter{on: &bOn}
	const interval = 300 * time.Millisecond
	a := leaseDomain(t, env, "a", interval, 2, func(r provision.Resolver) provision.Resolver { la.Resolver = r; return la })
	b := leaseDomain(t, env, "b", interval, 2, func(r provision.Resolver) provision.Resolver { lb.Resolver = r; return lb })
	ctx := context.Background()
	for i := range 10 {
		if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acc%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A's long pass.
	aOn.Store(true)
	aDone := make(chan *api.ReconcileReply, 1)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		rep, err := a.Reconcile(rctx, api.ReconcileRequest{})
		if err != nil {
			t.Error(err)
		}
		aDone <- rep
	}()
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

package responder_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// stuckLookups holds every LOOKUP until its context ends (the pass's,
// which the service's Close ends), and signals the first.
type stuckLookups struct {
	provision.Resolver
	once    sync.Once
	started chan struct{}
}

func (s *stuckLookups) LookupAll(ctx context.Context, pub string) ([]string, error) {
	s.once.Do(func() { close(s.started) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopCutReconcileIsNotRunning: a prov.reconcile whose pass is still
// under way StopWait into a stop is cut with the other requests (504,
// naming the stop), never answered "running": the pass ends with the
// service right after (Close), so the instance the reply names would
// never report it. The handler answered "running" on its request's
// cancellation, and that answer raced the responder's own 504.
func TestStopCutReconcileIsNotRunning(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if _, err := svc.Provision.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	sl := &stuckLookups{Resolver: svc.Resolver, started: make(chan struct{})}
	p := domain(t, svc, provision.Config{Resolver: sl, Instance: "cut"})
	for i := range 30 {
		prefix := fmt.Sprintf("prov.rcut%d", i)
		r := extra(t, env, p, responder.Config{Prefix: prefix, Name: fmt.Sprintf("rcut%d", i), RequestTimeout: time.Minute, StopWait: 50 * time.Millisecond})
		ch := make(chan provtest.Reply, 1)
		go func() { ch <- provtest.Request(t, admin, prefix+".reconcile", `{}`) }()
		select {
		case <-sl.started:
		case <-time.After(10 * time.Second):
			t.Fatal("the pass sent no LOOKUP")
		}
		time.Sleep(20 * time.Millisecond) // the request waits on the pass
		r.Stop()
		rep := <-ch
		if rep.Code != api.CodeTimeout || !strings.Contains(rep.Description, "stopped before the request was done") {
			t.Fatalf("try %d: a reconcile cut by the stop: %d %q, want 504 naming the stop", i, rep.Code, rep.Raw)
		}
	}
}

package provision_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// heldLookups holds every LOOKUP, once on is set, until its context ends,
// and signals the first on started.
type heldLookups struct {
	provision.Resolver
	on      atomic.Bool
	started chan struct{}
	once    sync.Once
}

func (h *heldLookups) LookupAll(ctx context.Context, pub string) ([]string, error) {
	if !h.on.Load() {
		return h.Resolver.LookupAll(ctx, pub)
	}
	h.once.Do(func() { close(h.started) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// lockedBuf is a log sink several goroutines write.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestPassCutByAStopFailsNoAccount: a pass under way when the service
// stops (Run's context ends) is cut off, as by a lost lease: the accounts
// in flight did not fail. Each was counted failed, with a warning that it
// could not be brought in line, and the pass stored as the last one.
func TestPassCutByAStopFailsNoAccount(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	hl := &heldLookups{started: make(chan struct{})}
	logs := &lockedBuf{}
	svc, _ := kvDomainOf(t, env, "a", func(r provision.Resolver) provision.Resolver { hl.Resolver = r; return hl }, func(c *provision.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	createAccounts(t, svc, 4)
	hl.on.Store(true)
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		svc.Run(ctx)
	}()
	select {
	case <-hl.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the pass sent no LOOKUP")
	}
	time.Sleep(100 * time.Millisecond) // the other accounts' LOOKUPs under way too
	stop()
	<-ran
	st, err := svc.Status(context.Background(), api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if last := st.LastReconcile; last != nil && last.Failed > 0 {
		t.Errorf("the pass cut by the stop counted %d accounts failed: %+v", last.Failed, *last)
	}
	if strings.Contains(logs.String(), "could not bring an account in line") {
		t.Errorf("the pass cut by the stop warned of accounts it could not bring in line:\n%s", logs.String())
	}
}

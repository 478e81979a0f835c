package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// countingHandler counts the records logged, by message.
type countingHandler struct {
	mu *sync.Mutex
	n  map[string]int
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func (h countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// TestASustainedOverloadLogsItsDropsNowAndThen: events are published
// faster than the audit stream stores them, for three seconds, the queue full
// all along. The "first drop" ERROR was logged again after every write
// round (each round logged the count and set it back to 0, so that the
// next drop was a first), with the count's ERROR beside it: two lines a
// round, every few hundred milliseconds for as long as it lasts.
func TestASustainedOverloadLogsItsDropsNowAndThen(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	h := countingHandler{mu: &sync.Mutex{}, n: map[string]int{}}
	pub := events.New(sys, "prov", slog.New(h))
	if err := pub.WithAudit(context.Background(), auditConn(t, env), 1); err != nil {
		t.Fatal(err)
	}
	for i, start := 0, time.Now(); time.Since(start) < 3*time.Second; i++ {
		pub.Publish(context.Background(), api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	if pub.Lost() == 0 {
		t.Skip("the writer kept up: no overload")
	}
	first := h.count("the audit stream is too far behind: its queue is full and events are dropped until it catches up")
	counts := h.count("audit events dropped: the audit queue was full")
	t.Logf("lost %d, first %d, counts %d", pub.Lost(), first, counts)
	if first > 2 || counts > 2 {
		t.Fatalf("three seconds of overload logged %d \"too far behind\" and %d counts of dropped events; want one or two of each", first, counts)
	}
	pub.Close(5 * time.Second)
}

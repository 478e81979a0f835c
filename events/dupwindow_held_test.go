package events_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// warnLog records the messages a publisher logs at level Warn and above.
type warnLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *warnLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *warnLog) WithGroup(string) slog.Handler                { return h }
func (h *warnLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *warnLog) count(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

// TestAuditHeldWhileTheLookFails: writes whose answers were lost wait past
// the duplicate window's check, and the stream does not answer the look
// for them (storedAfter) for seconds. The writer tried it again and again
// and said nothing: an operator saw no reason why audit writes were held
// (only, later, the events dropped). It now logs it once for the outage,
// not once per attempt.
func TestAuditHeldWhileTheLookFails(t *testing.T) {
	logs := &warnLog{}
	_, svc, d, pub := deafPublisher(t, logs)
	publishUsers(pub, 0, 1)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.deaf.Store(true)
	publishUsers(pub, 1, 3) // stored, their answers lost
	// The first look is due 750ms after the lost writes and fails after
	// 300ms; wait for its warning rather than a fixed time, which a
	// loaded machine can overrun (a fail without the bug).
	for deadline := time.Now().Add(20 * time.Second); logs.count("held") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the writer did not log within 20s that audit writes are held while the look failed: %q", logs.msgs)
		}
	}
	// Then let the look fail several times more (each 300ms, and a
	// back-off of 200ms, 400ms, ...): the outage is still logged once.
	time.Sleep(3 * time.Second)
	if n := logs.count("held"); n != 1 {
		t.Fatalf("the writer logged %d times that audit writes are held while the look failed, want once: %q", n, logs.msgs)
	}
	d.deaf.Store(false)
	d.mu.Lock()
	d.last.Close() // nats.go reconnects, and the look is answered
	d.mu.Unlock()
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	storedOnceInOrder(t, svc, 3)
}

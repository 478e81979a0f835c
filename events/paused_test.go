package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/testenv"
)

// TestPublishDoesNotWaitForAPausedServer: the server is paused (SIGSTOP),
// its sockets open. Publish must still return at once, however many
// events are published, and Close within about its timeout.
func TestPublishDoesNotWaitForAPausedServer(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	proc := env.RealServer(t)
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := auditConn(t, env)
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Pause(t, proc)
	// Resumed before the connections close, which wait for their
	// writes to the paused server.
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
	name := strings.Repeat("x", 1000)
	var slowest time.Duration
	sent := 0
	for start := time.Now(); sent < 50000 && time.Since(start) < 5*time.Second; sent++ {
		s := time.Now()
		pub.Publish(context.Background(), api.Event{Type: api.EventUserCreated, Account: acct, UserName: name + fmt.Sprint(sent)})
		slowest = max(slowest, time.Since(s))
	}
	// What is asserted is that no call waits: the count only has to be
	// well past the audit queue's bound (4,000), so that the queue is
	// full for most of them; on a loaded machine 50,000 take longer
	// than 5s without any call waiting (44,325 once in CI, the slowest
	// 76ms).
	if sent < 5*events.AuditMaxQueue || slowest > 500*time.Millisecond {
		t.Fatalf("with the server paused, %d Publish calls (of 50000) in 5s, the slowest %v; want at least %d, none over 500ms", sent, slowest, 5*events.AuditMaxQueue)
	}
	start := time.Now()
	err := pub.Close(time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close(1s) took %v (%v)", took, err)
	}
}

// TestCloseCountsTheSystemEventsDroppedBefore: with the server paused,
// more system-account events are published than the queue holds; the
// sender, stuck in a publish, never empties the queue, where it logs how
// many were dropped. Close gave up the queued ones and said nothing of
// those dropped before: the stop that follows exits, and their count was
// lost.
func TestCloseCountsTheSystemEventsDroppedBefore(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	proc := env.RealServer(t)
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	testenv.Pause(t, proc)
	t.Cleanup(func() { proc.Signal(syscall.SIGCONT) })
	name := strings.Repeat("x", 1000)
	const sent = 20000 // past what the socket and the queue take
	for i := range sent {
		pub.Publish(context.Background(), api.Event{Type: api.EventUserCreated, Account: acct, UserName: name + fmt.Sprint(i)})
	}
	err := pub.Close(time.Second)
	if err == nil {
		t.Fatal("Close with the server paused gave up no event")
	}
	var lost, dropped int
	fmt.Sscanf(err.Error(), "events: %d events not published within the close's time, and %d dropped before", &lost, &dropped)
	if dropped == 0 || lost+dropped < sent-events.AuditMaxQueue*3 {
		t.Fatalf("Close: %v; %d events were published, most of them dropped before (the queue holds %d)", err, sent, events.AuditMaxQueue)
	}
}

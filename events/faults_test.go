package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// acct is the account the events of these tests are of.
const acct = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWX"

// auditSetup starts a deployment with JetStream and a publisher with an
// audit stream of one replica on the service user's connection.
func auditSetup(t *testing.T) (*provtest.Env, *nats.Conn, *events.Publisher) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := auditConn(t, env)
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	return env, svc, pub
}

// TestPageGoesOnPastASkippedEntry: an entry Page skips (not an event)
// must not end the paging: the events after it are still reachable.
func TestPageGoesOnPastASkippedEntry(t *testing.T) {
	_, svc, pub := auditSetup(t)
	ctx := context.Background()
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	send := func(name string) {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: name})
		if err := pub.Flush(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	send("0")
	// Not an event (written by hand, or by another tool): Page skips it.
	if _, err := js.Publish(ctx, events.AuditSubject("prov", acct, api.EventUserCreated), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 5; i++ {
		send(fmt.Sprint(i))
	}
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for after := uint64(0); ; {
		page, next, _, err := audit.Page(ctx, acct, after, time.Time{}, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.Event.UserName)
		}
		if next == 0 {
			break
		}
		after = next
	}
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("paged %v, want [0 1 2 3 4]", got)
	}
}

// TestCloseKeepsItsTimeout: with the server down, Close returns within
// about its timeout, as its doc says ("flushes ... at most timeout").
func TestCloseKeepsItsTimeout(t *testing.T) {
	env, _, pub := auditSetup(t)
	ctx := context.Background()
	pub.ForceBatches() // as on a replicated stream
	env.Server.Stop()
	for i := range 2000 {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	start := time.Now()
	err := pub.Close(time.Second)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close(1s) took %v (err %v)", took, err)
	}
}

// TestFlushReportsALostWrite: Flush must not return nil for an audit
// write that was given up ("returns an error when some were not stored").
func TestFlushReportsALostWrite(t *testing.T) {
	_, svc, pub := auditSetup(t)
	ctx := context.Background()
	// The audit connection is gone: every write fails (as in a long
	// outage, only sooner).
	svc.Close()
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "x"})
	// The write is tried 5 times and given up (logged as lost).
	if err := pub.Flush(30 * time.Second); err == nil {
		t.Fatal("Flush returned nil for an audit write that was never stored")
	}
}

// TestFlushThenRetryNoRace: a Flush that timed out while retries were in
// flight, then a new failing write: WaitGroup.Add from zero concurrent
// with the Flush goroutine's Wait.
func TestFlushThenRetryNoRace(t *testing.T) {
	t.Parallel()
	_, svc, pub := auditSetup(t)
	ctx := context.Background()
	svc.Close()
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "1"})
	time.Sleep(time.Second) // its async write failed; a retry runs
	if err := pub.Flush(100 * time.Millisecond); err == nil {
		t.Fatal("Flush: no error with a retry in flight")
	}
	time.Sleep(5 * time.Second) // the retry gave up
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "2"})
	time.Sleep(time.Second)
}

// TestPageAfterTheLastSequence: a cursor at the largest sequence there can
// be is past the stream's last record, like any other: refused (400) as
// such, not wrapped to the start of the stream. It was answered with an
// empty page since, not refused as every other cursor past the end is.
func TestPageAfterTheLastSequence(t *testing.T) {
	_, svc, pub := auditSetup(t)
	ctx := context.Background()
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "x"})
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	for _, after := range []uint64{1 << 40, math.MaxUint64} {
		page, next, _, err := audit.Page(ctx, acct, after, time.Time{}, 10)
		if !errors.Is(err, provision.ErrInvalid) || len(page) != 0 || next != 0 {
			t.Errorf("a page after %d, past the last record: %d entries, next %d, %v; want it refused as invalid", after, len(page), next, err)
		}
	}
}

// TestCloseLeavesNoFlushGoroutine: a Flush (here Close's) that timed out
// must not leave a goroutine behind waiting for the writes: one was left
// per timed-out call, alive until the writes ended (in an outage, until
// the retries gave up; under steady load, possibly never).
func TestCloseLeavesNoFlushGoroutine(t *testing.T) {
	env, _, pub := auditSetup(t)
	ctx := context.Background()
	env.Server.Stop()
	for i := range 50 {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	if err := pub.Close(500 * time.Millisecond); err == nil {
		t.Fatal("Close: no error with the server down")
	}
	// What Close started may take a moment to return; a waiter it left
	// behind would stay for as long as the writes do.
	var left []string
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if left = goroutinesIn("events.(*Publisher).Flush"); len(left) == 0 {
			return
		}
	}
	t.Fatalf("%d goroutines of Flush still run 2s after Close returned:\n%s", len(left), strings.Join(left, "\n\n"))
}

// goroutinesIn returns the stacks of the goroutines that run fn.
func goroutinesIn(fn string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
	}
	return out
}

// TestCloseStopsTheWriterOfALaterPublish: after Close, an event published
// gets a writer of its own; a later Close must stop that writer at its
// deadline too, giving up (and counting) what is left, and return within
// about its timeout. Only the writer WithAudit started was stopped at
// Close's deadline: the later one ran on, with the server away, until its
// own auditTimeout, while Close returned a second past its timeout and
// left it running, its events not yet counted lost.
func TestCloseStopsTheWriterOfALaterPublish(t *testing.T) {
	env, _, pub, logs := auditSetupLogged(t)
	ctx := context.Background()
	if err := pub.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	env.Server.Stop()
	for i := range 10 {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	start := time.Now()
	err := pub.Close(500 * time.Millisecond)
	took := time.Since(start)
	writing := pub.Writing()
	// The writer logs what it gave up just after it says it stopped.
	for deadline := time.Now().Add(time.Second); logs.lost() < 10 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if took > 900*time.Millisecond || writing || pub.Lost() != 10 || logs.lost() != 10 {
		t.Fatalf("Close(500ms) took %v (%v); after it a writer runs: %v; %d of 10 events counted lost, %d logged lost",
			took.Round(time.Millisecond), err, writing, pub.Lost(), logs.lost())
	}
}

package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
)

// TestAuditStreamDeletedWhileAnswersWereLost: writes whose answers were
// lost wait past the duplicate window's check, and an operator deletes the
// audit stream meanwhile. The writer's look for them in the stream
// (storedAfter) failed "stream not found" every time, so it never wrote
// again, never made the stream again as a failed write does, and every
// event after was held until dropped.
func TestAuditStreamDeletedWhileAnswersWereLost(t *testing.T) {
	env, svc, d, _, pub := answersLost(t)
	time.Sleep(2 * time.Second)
	js, err := jetstream.New(operatorConn(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), events.StreamName); err != nil {
		t.Fatal(err)
	}
	d.deaf.Store(false)
	d.mu.Lock()
	d.last.Close() // nats.go reconnects, and the writer's next calls are answered
	d.mu.Unlock()
	publishUsers(pub, 3, 4)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush after the stream was deleted: %v", err)
	}
	seen, got := stored(t, svc)
	if seen["3"] != 1 || pub.Lost() != 0 {
		t.Fatalf("stored %v in the stream made again, %d lost; want 1 to 3", got, pub.Lost())
	}
}

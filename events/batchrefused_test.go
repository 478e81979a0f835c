package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBatchRefusalsDoNotAddUp: a batch the stream refuses for what it is
// as a batch (here: atomic publish disabled, a 400 like "atomic publish
// batch is incomplete" after a leader change) counts one refusal against
// the event at its head, but the writer then writes the window one by one,
// and a store resets the count: however many batches are refused, no event
// is given up for them.
func TestBatchRefusalsDoNotAddUp(t *testing.T) {
	t.Parallel()
	_, svc, pub, logs := auditSetupLogged(t)
	pub.ForceBatches()
	changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	const rounds, per = 2 * 5, 20 // twice auditAttempts batches, each of at least auditMinBatch
	for r := range rounds {
		publishUsers(pub, r*per, (r+1)*per)
		if err := pub.Flush(10 * time.Second); err != nil {
			t.Fatalf("round %d: Flush: %v", r, err)
		}
	}
	if pub.Lost() != 0 || logs.lost() != 0 || pub.Batches() != 0 {
		t.Fatalf("%d lost, %d logged lost, %d batches; want none", pub.Lost(), logs.lost(), pub.Batches())
	}
	storedOnceInOrder(t, svc, rounds*per)
}

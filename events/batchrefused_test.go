package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
)

// TestBatchRefusalsDoNotAddUp: a batch the stream refuses for what it is
// as a batch (here: atomic publish disabled, a 400 like "atomic publish
// batch is incomplete" after a leader change) counts one refusal against
// the event at its head, but the writer then writes the window one by one,
// and a store resets the count: however many batches are refused, no event
// is given up for them.
func TestBatchRefusalsDoNotAddUp(t *testing.T) {
	_, svc, pub, logs := auditSetupLogged(t)
	pub.ForceBatches()
	ctx := context.Background()
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.AllowAtomicPublish = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
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

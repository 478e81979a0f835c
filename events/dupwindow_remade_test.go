package events_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
)

// TestAuditStreamRemadeThenAnswersLost: the audit stream is deleted and
// made again (by another instance that starts) after the writer stored 5
// events in it, so that the new stream's sequences start at 1 again; then
// the answers of 2 writes to the new stream are lost past the duplicate
// window. The writer looked for them after the sequence of its last
// answered write in the old stream (5), found nothing in a stream whose
// last sequence was 2, and stored them again.
func TestAuditStreamRemadeThenAnswersLost(t *testing.T) {
	logs := &lossLog{}
	env, svc, d, pub := deafPublisher(t, logs)
	publishUsers(pub, 0, 5)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(operatorConn(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), events.StreamName); err != nil {
		t.Fatal(err)
	}
	other := events.New(env.Connect(t, env.Init.ProvisionerCreds), "prov", nil)
	if err := other.WithAudit(context.Background(), auditConn(t, env), 1); err != nil {
		t.Fatal(err) // another instance starts, and makes the stream again
	}
	d.deaf.Store(true)
	publishUsers(pub, 5, 7) // stored at sequences 1 and 2, their answers lost
	time.Sleep(2 * time.Second)
	d.deaf.Store(false)
	d.mu.Lock()
	d.last.Close() // nats.go reconnects, and the writer's retries are answered
	d.mu.Unlock()
	publishUsers(pub, 7, 8)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if _, got := stored(t, svc); !slices.Equal(got, []string{"5", "6", "7"}) {
		t.Fatalf("the stream made again holds %v, want [5 6 7]", got)
	}
	if pub.Lost() != 0 || logs.lost() != 0 {
		t.Fatalf("%d lost, %d logged lost", pub.Lost(), logs.lost())
	}
}

package events_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/jsbatch"
)

// TestBatchesOffAreRemembered: an operator turns atomic publishes off on
// the audit stream (allow_atomic false). The writer found out at every
// window of a batch's worth of events, each costing a batch the stream
// refused before its events went one by one; it now remembers the
// refusal and writes the windows after it one by one, and tries a batch
// again a while later (here shortened), so that batches come back once
// the operator turns them on again.
func TestBatchesOffAreRemembered(t *testing.T) {
	t.Parallel()
	env, svc, pub, logs := auditSetupLogged(t)
	pub.ForceBatches()
	// Each batch sent, refused or not, ends with its commit, which the
	// subjects' subscribers see as any publish (the service user may
	// not subscribe; an operator may).
	op := operatorConn(t, env)
	var commits atomic.Int64
	sub, err := op.Subscribe("prov.audit.>", func(m *nats.Msg) {
		if m.Header.Get(jsbatch.IDHeader) != "" && m.Header.Get("Nats-Batch-Commit") != "" {
			commits.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	const rounds, per = 8, 20 // each window a batch's worth
	for r := range rounds {
		publishUsers(pub, r*per, (r+1)*per)
		if err := pub.Flush(10 * time.Second); err != nil {
			t.Fatalf("round %d: Flush: %v", r, err)
		}
	}
	if err := op.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := commits.Load(); n != 1 {
		t.Errorf("%d batches sent to a stream that allows none, over %d windows of a batch's worth; want 1, the one that found out", n, rounds)
	}
	if pub.Lost() != 0 || logs.lost() != 0 || pub.Batches() != 0 {
		t.Fatalf("%d lost, %d logged lost, %d batches; want none", pub.Lost(), logs.lost(), pub.Batches())
	}
	storedOnceInOrder(t, svc, rounds*per)
}

// TestBatchesComeBack: once the time the writer remembers a refusal has
// passed, it tries a batch again, which a stream that allows them again
// stores.
func TestBatchesComeBack(t *testing.T) {
	// Not parallel: it shortens the time for the publishers made in it.
	defer events.SetBatchesOffFor(200 * time.Millisecond)()
	_, svc, pub, logs := auditSetupLogged(t)
	pub.ForceBatches()
	restore := changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	const per = 20
	publishUsers(pub, 0, per)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	restore()
	n := per
	for deadline := time.Now().Add(30 * time.Second); pub.Batches() == 0; n += per {
		if time.Now().After(deadline) {
			t.Fatalf("no batch stored within 30 s of the stream allowing them again")
		}
		time.Sleep(50 * time.Millisecond)
		publishUsers(pub, n, n+per)
		if err := pub.Flush(10 * time.Second); err != nil {
			t.Fatalf("Flush: %v", err)
		}
	}
	if pub.Lost() != 0 || logs.lost() != 0 {
		t.Fatalf("%d lost, %d logged lost; want none", pub.Lost(), logs.lost())
	}
	storedOnceInOrder(t, svc, n)
}

package events_test

import (
	"testing"
	"time"
)

// TestBatchingWriterKeepsOrderWhenWritesAreDropped: the writer of a
// replicated stream sent a window's single writes (fewer than a batch,
// and every window after a failure) all at once, without waiting for the
// answers; when the stream lost some of them and stored those after them
// (a leader stepping down: TestAuditSurvivesLeaderChanges, "event 4000 of
// the audit is 4378"), the lost ones, written again, were stored after
// them, out of order. Here the stream drops writes as its ingest queue
// overflows (another publisher floods it), which it answers "429 too many
// requests", while the writer batches as on a replicated stream: each
// event must be stored once, in publish order.
func TestBatchingWriterKeepsOrderWhenWritesAreDropped(t *testing.T) {
	t.Parallel()
	pub, svc, logs, stopFlood := overloadedStream(t)
	pub.ForceBatches() // as on a replicated stream
	// Bursts of 10 (written one by one) and of 50 (a batch).
	const n = 300
	for i := 0; i < n; {
		k := 10
		if i%100 == 50 {
			k = 50
		}
		publishUsers(pub, i, i+k)
		i += k
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	stopFlood()
	err := pub.Flush(60 * time.Second)
	if lost, logged := pub.Lost(), logs.lost(); lost != 0 || logged != 0 || err != nil {
		t.Errorf("%d events counted lost, %d logged lost (Flush: %v); want none", lost, logged, err)
	}
	storedOnceInOrder(t, svc, n)
}

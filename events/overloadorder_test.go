package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/natsembed"
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
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
	// A small ingest queue, which the flood below keeps full.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream: { store_dir: %q, max_buffered_msgs: 20 }\n", filepath.Join(dir, "js"))), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(conf, natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	connect := func(opts ...nats.Option) *nats.Conn {
		nc, err := nats.Connect(srv.URL(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	svc := connect(nats.ReconnectBufSize(-1))
	logs := &lossLog{}
	pub := events.New(connect(), "prov", slog.New(logs))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	pub.ForceBatches() // as on a replicated stream
	flood := connect()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 100 {
				_ = flood.Publish("prov.audit.flood.x", []byte("x"))
			}
		}
	})
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
	close(stop)
	wg.Wait()
	err = pub.Flush(60 * time.Second)
	if lost, logged := pub.Lost(), logs.lost(); lost != 0 || logged != 0 || err != nil {
		t.Errorf("%d events counted lost, %d logged lost (Flush: %v); want none", lost, logged, err)
	}
	storedOnceInOrder(t, svc, n)
}

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

// TestAnOverloadedStreamLosesNothing: a stream whose ingest queue is full
// drops a write and answers it "429 too many requests": the stream is
// overloaded, as in an outage, and the event is not at fault. The writer
// counted it a refusal of the event, and gave up (lost) an event dropped
// five times in a row while another publisher kept the queue full.
func TestAnOverloadedStreamLosesNothing(t *testing.T) {
	t.Parallel()
	pub, svc, logs, stopFlood := overloadedStream(t)
	const n = 50
	publishUsers(pub, 0, n)
	time.Sleep(5 * time.Second) // the back-off of five attempts is 3s
	stopFlood()
	err := pub.Flush(30 * time.Second)
	if lost, logged := pub.Lost(), logs.lost(); lost != 0 || logged != 0 || err != nil {
		t.Errorf("%d events counted lost, %d logged lost (Flush: %v); want none", lost, logged, err)
	}
	seen, _ := stored(t, svc)
	for i := range n {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Errorf("event %d stored %d times", i, c)
		}
	}
}

// overloadedStream starts a server whose JetStream ingest queue is small
// (max_buffered_msgs 20), an audit publisher on it, and another publisher
// on the stream's subjects, without asking for answers, as fast as it can:
// the stream drops writes and answers them "429 too many requests". It
// returns the publisher, the service's connection, the publisher's log and
// a func that stops the flood.
func overloadedStream(t *testing.T) (pub *events.Publisher, svc *nats.Conn, logs *lossLog, stopFlood func()) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "server.conf")
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
	svc = connect(nats.ReconnectBufSize(-1))
	logs = &lossLog{}
	pub = events.New(connect(), "prov", slog.New(logs))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
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
	var once sync.Once
	stopFlood = func() { once.Do(func() { close(stop); wg.Wait() }) }
	t.Cleanup(stopFlood)
	return pub, svc, logs, stopFlood
}

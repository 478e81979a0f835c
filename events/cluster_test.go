package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/testenv"
)

// startCluster starts three embedded servers routed as one JetStream
// cluster (no accounts: the publisher needs none) and returns their client
// URLs.
func startCluster(t *testing.T) string {
	t.Helper()
	urls, _, _ := startClusterServers(t, 3)
	return strings.Join(urls, ",")
}

// startClusterServers is startCluster of n servers, returning each
// server's client URL, configuration file (to start it again) and server.
func startClusterServers(t *testing.T, n int) ([]string, []string, []*natsembed.Server) {
	t.Helper()
	dir := t.TempDir()
	routes := make([]string, n)
	routePorts := make([]int, n)
	for i := range n {
		routePorts[i] = testenv.FreePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])
	}
	var urls []string
	confs := make([]string, n)
	for i := range n {
		port := testenv.FreePort(t)
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", port))
		conf := fmt.Sprintf("server_name: n%d\nlisten: \"127.0.0.1:%d\"\njetstream: { store_dir: %q }\ncluster: { name: c%d, listen: \"127.0.0.1:%d\", routes: [%s] }\n",
			i+1, port, filepath.Join(dir, fmt.Sprintf("js%d", i+1)), routePorts[0], routePorts[i], strings.Join(routes, ", "))
		confs[i] = filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(confs[i], []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The servers of a cluster start together: each waits for its routes
	// before its JetStream is ready.
	errs := make(chan error, n)
	srvs := make([]*natsembed.Server, n)
	for i, conf := range confs {
		go func() {
			srv, err := natsembed.Start(conf, natsembed.Options{})
			if err == nil {
				srvs[i] = srv
				t.Cleanup(srv.Stop)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return urls, confs, srvs
}

// TestAuditSurvivesLeaderChanges: on an R3 audit stream, the stream leader
// steps down again and again while events go in batches of up to 500. A
// batch a leader change cuts has no responders, or no commit in time, or
// (when the change falls mid-batch) is refused as "atomic publish batch is
// incomplete", a 400 charged as one refusal to the event at its head; the
// writer then writes one event at a time until one is stored, which clears
// the count, then batches again, so no event is given up for a leader
// change: each is stored once, in publish order (no write goes while the
// one before it has no answer: TestBatchingWriterKeepsOrderWhenWritesAreDropped).
func TestAuditSurvivesLeaderChanges(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	urls := startCluster(t)
	connect := func(opts ...nats.Option) *nats.Conn {
		nc, err := nats.Connect(urls, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	svc := connect(nats.ReconnectBufSize(-1))
	logs := &lossLog{}
	pub := events.New(connect(), "prov", slog.New(logs))
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pub.WithAudit(c, svc, 3)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WithAudit: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	admin := connect()
	const steps, per = 10, 1000
	for s := range steps {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := s * per; i < (s+1)*per; i += 500 {
				publishUsers(pub, i, i+500)
				time.Sleep(time.Millisecond)
			}
		}()
		time.Sleep(time.Millisecond)
		if _, err := admin.Request("$JS.API.STREAM.LEADER.STEPDOWN."+events.StreamName, nil, 5*time.Second); err != nil {
			t.Logf("step down %d: %v", s, err)
		}
		<-done
		if err := pub.Flush(30 * time.Second); err != nil {
			t.Errorf("step %d: Flush: %v", s, err)
		}
	}
	err := pub.Flush(60 * time.Second)
	if lost, logged := pub.Lost(), logs.lost(); lost != 0 || logged != 0 || err != nil {
		t.Errorf("%d events counted lost, %d logged lost (Flush: %v); want none", lost, logged, err)
	}
	t.Logf("%d atomic batches", pub.Batches())
	// The last step down may still be settling: until it has, a page of
	// the audit (stream info, then an ordered consumer) can find no
	// responders, which prov.audit answers 503. Read once three pages in
	// a row come back.
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	for ok, deadline := 0, time.Now().Add(20*time.Second); ok < 3; time.Sleep(100 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, _, err := audit.Page(c, "", 0, time.Time{}, 1)
		cancel()
		if ok++; err != nil {
			ok = 0
			if time.Now().After(deadline) {
				t.Fatalf("the audit cannot be read 20s after the last step down: %v", err)
			}
		}
	}
	storedOnceInOrder(t, svc, steps*per)
}

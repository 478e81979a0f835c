package events_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// deafConn is a client's socket that, while deaf, discards what it reads:
// the server stores the writes sent on it, and their answers are lost.
type deafConn struct {
	net.Conn
	deaf *atomic.Bool
}

func (c *deafConn) Read(b []byte) (int, error) {
	for {
		n, err := c.Conn.Read(b)
		if err != nil || !c.deaf.Load() {
			return n, err
		}
	}
}

// deafDialer dials deafConns and keeps the last.
type deafDialer struct {
	deaf atomic.Bool
	mu   sync.Mutex
	last net.Conn
}

func (d *deafDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.last = &deafConn{Conn: c, deaf: &d.deaf}
	return d.last, nil
}

// answersLost starts a publisher whose audit stream has a duplicate window
// of 1s (and an answer's wait of 300ms), writes event 0, then makes the
// service connection deaf (d) and publishes events 1 and 2: stored, their
// answers lost.
func answersLost(t *testing.T) (*provtest.Env, *nats.Conn, *deafDialer, *lossLog, *events.Publisher) {
	t.Helper()
	logs := &lossLog{}
	env, svc, d, pub := deafPublisher(t, logs)
	publishUsers(pub, 0, 1)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.deaf.Store(true)
	publishUsers(pub, 1, 3) // stored, their answers lost
	return env, svc, d, logs, pub
}

// deafPublisher starts a publisher, logging to h, whose audit stream has a
// duplicate window of 1s (and an answer's wait of 300ms), on a service
// connection that d can make deaf (what it writes is stored, the answers
// lost).
func deafPublisher(t *testing.T, h slog.Handler) (*provtest.Env, *nats.Conn, *deafDialer, *events.Publisher) {
	t.Helper()
	t.Cleanup(events.SetAuditTimeout(300 * time.Millisecond))
	t.Cleanup(events.SetAuditDuplicates(time.Second))
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	d := &deafDialer{}
	svc := env.Connect(t, env.Init.ServiceCreds, nats.SetCustomDialer(d), nats.ReconnectBufSize(-1))
	pub := events.New(sys, "prov", slog.New(h))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	return env, svc, d, pub
}

// TestAuditRewriteAfterTheDuplicateWindowStoresOnce: an audit write is
// stored but its answer is lost, and the writer tries it again for as
// long as it takes. A retry made after the stream's duplicate window has
// passed since the first copy is no longer recognised by its message id:
// it was stored again, once per retry. The writer now looks whether the
// stream holds the event before it writes an old one again. (The window
// is cut to 1s here, the answer's wait to 300ms.)
func TestAuditRewriteAfterTheDuplicateWindowStoresOnce(t *testing.T) {
	_, svc, d, logs, pub := answersLost(t)
	time.Sleep(4 * time.Second)
	d.deaf.Store(false)
	d.mu.Lock()
	d.last.Close() // nats.go reconnects, and the writer's retries are answered
	d.mu.Unlock()
	publishUsers(pub, 3, 4)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	storedOnceInOrder(t, svc, 4)
	if pub.Lost() != 0 || logs.lost() != 0 {
		t.Fatalf("%d lost, %d logged lost", pub.Lost(), logs.lost())
	}
}

package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestCloseSendsTheQueuedSystemEvents: the system-account events wait in
// a queue for a sender goroutine. A stop closes the publisher, then
// drains and closes its connection, and the process exits: Close must
// not return while events it could send still wait, else the events of
// the last changes before a stop are never published, and nothing says
// so. (Without an audit stream, the file store's case, Close returned at
// once.)
func TestCloseSendsTheQueuedSystemEvents(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	// A slow link: the sender falls behind Publish, as with a busy server.
	d := &slowDialer{}
	sys := env.Connect(t, env.Init.ProvisionerCreds, nats.SetCustomDialer(d))
	d.armed.Store(true)
	admin := env.Admin(t)
	sub, err := admin.SubscribeSync("prov.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	const n = 4000
	for i := range n {
		pub.Publish(context.Background(), api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	if err := pub.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// As the service's stop does once the publisher is closed.
	closed := make(chan struct{})
	sys.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := sys.Drain(); err != nil {
		t.Fatal(err)
	}
	<-closed
	got := 0
	for {
		if _, err := sub.NextMsg(time.Second); err != nil {
			break
		}
		got++
	}
	if got != n {
		t.Fatalf("%d of the %d events published before Close were sent", got, n)
	}
}

// slowDialer dials connections whose writes of more than a few protocol
// lines, once armed, take 20ms each.
type slowDialer struct{ armed atomic.Bool }

func (d *slowDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &slowConn{Conn: c, armed: &d.armed}, nil
}

type slowConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c *slowConn) Write(b []byte) (int, error) {
	if len(b) > 1024 && c.armed.Load() {
		time.Sleep(20 * time.Millisecond)
	}
	return c.Conn.Write(b)
}

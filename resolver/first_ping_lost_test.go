package resolver_test

import (
	"context"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// onLog runs fn, once, when the client logs msg with server=name.
type onLog struct {
	slog.Handler
	msg, name string
	once      *sync.Once
	fn        func()
}

func (h onLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "server" && a.Value.String() == h.name {
				h.once.Do(h.fn)
				return false
			}
			return true
		})
	}
	return h.Handler.Handle(ctx, r)
}

func (h onLog) WithAttrs(as []slog.Attr) slog.Handler {
	h.Handler = h.Handler.WithAttrs(as)
	return h
}

func (h onLog) WithGroup(g string) slog.Handler {
	h.Handler = h.Handler.WithGroup(g)
	return h
}

// TestFirstPingLostWithConnectionIsAskedAgain: the connection drops
// during New's first ping, after node-a answered and before node-b's
// answer came (node-b paused a moment). The refresh ended with the ping
// lost, logged and nothing more: node-b stayed unknown until the next
// refresh (30 s by default; without the server events nothing else tells
// of it), and every push meanwhile waited for node-a alone and was
// answered as heard from every server, node-b never holding it.
func TestFirstPingLostWithConnectionIsAskedAgain(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := startCluster(t, res, 1)[0]
	b := startProcessNode(t, res, a)
	const prefix = "_INBOX_first-ping-test"
	nc, err := nats.Connect(a.srv.URL(), nats.UserCredentials(pingOnlyCreds(t, res, prefix)),
		nats.CustomInboxPrefix(prefix), nats.IgnoreDiscoveredServers(),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(-1),
		nats.ReconnectToServer(func(srvs []nats.Server, _ nats.ServerInfo) (*nats.Server, time.Duration) {
			// Back only once node-b's answer to the lost ping is gone.
			return &srvs[0], 1500 * time.Millisecond
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 15*time.Second, "both servers answer the ping", func() bool { return pingCount(t, nc) == 2 })
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Signal(syscall.SIGCONT) })
	// Once node-a's answer is in, the connection drops; node-b, let go,
	// answers a connection that is gone.
	h := onLog{Handler: provtest.Logger(t).Handler(), msg: "resolver server up", name: "node-a", once: &sync.Once{}, fn: func() {
		if err := a.srv.DisconnectClientByID(cid); err != nil {
			t.Error(err)
		}
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = b.Signal(syscall.SIGCONT)
		}()
	}}
	c := newClient(t, nc, resolver.Options{RefreshInterval: time.Hour, Logger: slog.New(h)})
	if _, ok := findServer(c.Servers(), "node-b"); ok {
		t.Skip("node-b answered the first ping before the drop")
	}
	waitFor(t, 10*time.Second, "the client reconnects", nc.IsConnected)
	// A ping takes at most 2 s; 8 s is ample on a loaded machine, far
	// short of the next refresh (an hour).
	deadline := time.Now().Add(8 * time.Second)
	for {
		if s, ok := findServer(c.Servers(), "node-b"); ok && s.Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-b unknown 8s after the reconnect (known %+v): the first ping, lost with the connection, was not asked again", c.Servers())
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, token := newAccount(t, "team", operator(t, res.Dir).Signer)
	r, err := c.Update(context.Background(), token)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stored() != 2 {
		t.Errorf("push after the reconnect: %+v, want stored by node-a and node-b", r)
	}
}

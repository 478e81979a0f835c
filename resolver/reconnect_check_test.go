package resolver_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// reconnectingCluster is node-a, embedded, and node-b, a process the test
// can kill -9, with a client whose connection to node-a, once dropped,
// comes back only after hold: a reconnect that takes a while (another
// server of the cluster, or the same one after a failover).
func reconnectingCluster(t *testing.T, timeout, hold time.Duration) (*node, *nats.Conn, *resolver.Client, func()) {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := startCluster(t, res, 1)[0]
	b := startProcessNode(t, res, a)
	nc, err := nats.Connect(a.srv.URL(), nats.UserCredentials(res.ProvisionerCreds),
		nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix), nats.IgnoreDiscoveredServers(),
		nats.MaxReconnects(-1), nats.ReconnectBufSize(-1),
		nats.ReconnectToServer(func(srvs []nats.Server, _ nats.ServerInfo) (*nats.Server, time.Duration) {
			return &srvs[0], hold
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 15*time.Second, "both servers answer the ping", func() bool { return pingCount(t, nc) == 2 })
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	if s, ok := findServer(c.Servers(), "node-b"); !ok || !s.Up {
		t.Fatalf("node-b at the start: %+v (known %v), want up", s, ok)
	}
	// Drops the client's connection to node-a.
	drop := func() {
		t.Helper()
		cid, err := nc.GetClientID()
		if err != nil {
			t.Fatal(err)
		}
		if err := a.srv.DisconnectClientByID(cid); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the client notices the drop", nc.IsReconnecting)
	}
	kill := func() {
		t.Helper()
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		drop()
	}
	return a, nc, c, kill
}

// TestCheckServersDuringOwnReconnectIsKept: node-b dies without a word
// (kill -9) and the store asks for a check of the servers (CheckServers)
// while the client's own connection is reconnecting, as when one machine
// lost takes both a server and the connection with it. The request was
// dropped: once reconnected, node-b stayed up until the next refresh (30 s
// by default) or until a push waited for it.
func TestCheckServersDuringOwnReconnectIsKept(t *testing.T) {
	t.Parallel()
	_, nc, c, kill := reconnectingCluster(t, resolver.DefaultTimeout, 1500*time.Millisecond)
	kill()
	c.CheckServers()
	waitFor(t, 10*time.Second, "the client reconnects", nc.IsConnected)
	// A ping marks a silent server down after 2 s; 8 s is ample on a
	// loaded machine, and far short of any refresh (an hour).
	deadline := time.Now().Add(8 * time.Second)
	for {
		s, ok := findServer(c.Servers(), "node-b")
		if ok && !s.Up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-b 8s after the reconnect: %+v (known %v): the check asked for during the reconnect was dropped", s, ok)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package resolver_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestOwnReconnectIsNoSilence: the client's own connection drops while a
// push waits (the push lost with it), the first claims request of a client
// that just started. The server's silence was the client's own outage, yet
// the server was suspected of answering no claims request, and the next
// ping, once reconnected, took its full resolver for a MEMORY or URL one:
// shown as "resolver":"none", logged as such, waited for by nothing and
// given no account pushed until it answered another claims request.
func TestOwnReconnectIsNoSilence(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// The client's link is slow, so that its push is still on the way
	// when the server drops the connection.
	nc := slowConn(t, env, 300*time.Millisecond)
	c := newClient(t, nc, resolver.Options{Timeout: 1500 * time.Millisecond, RefreshInterval: 300 * time.Millisecond, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("Servers() = %+v, want the one server up", s)
	}
	_, token := newAccount(t, "team", operator(t, env.Init.Dir).Signer)

	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Update(context.Background(), token)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := env.Server.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, provision.ErrTimeout) {
		t.Fatalf("Update across the reconnect: %v, want a timeout", err)
	}
	waitFor(t, 10*time.Second, "the client reconnects", nc.IsConnected)
	// Refreshes after the reconnect: the server answers them.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.Servers() {
			if s.NoResolver {
				t.Fatalf("server %s taken for one with no resolver after the client's own reconnect: %+v", s.Name, s)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOwnReconnectDuringPingIsNoSilence: the client's connection drops
// while a refresh waits for the servers to answer its ping (lost with
// the connection), and is back before the refresh's deadline. The silence
// was the client's own, yet every server it knew was marked down: no push
// waited for it, each listed it as down, until its next event or ping.
func TestOwnReconnectDuringPingIsNoSilence(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := slowConn(t, env, 200*time.Millisecond)
	c := newClient(t, nc, resolver.Options{Timeout: 3 * time.Second, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("Servers() = %+v, want the one server up", s)
	}
	// A refresh that New's first events set off is done by then: the
	// Discover below is the only ping.
	time.Sleep(time.Second)
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Discover(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	if err := env.Server.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("Discover heard from no server (its ping lost with the connection), yet returned no error")
	}
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("after a ping lost with the client's own connection, Servers() = %+v, want the server still up", s)
	}
}

// slowConn connects the provisioner's user to env's server through a link
// that delays what crosses it by delay (provtest.SlowLink), so that a
// request is still on the way when the connection drops; opts set more.
func slowConn(t *testing.T, env *provtest.Env, delay time.Duration, opts ...nats.Option) *nats.Conn {
	t.Helper()
	link := provtest.SlowLink(t, strings.TrimPrefix(env.Server.URL(), "nats://"), delay)
	return env.Connect(t, env.Init.ProvisionerCreds, append([]nats.Option{func(o *nats.Options) error {
		o.Url, o.Servers = "nats://"+link, []string{"nats://" + link}
		return nil
	}}, opts...)...)
}

// reconnectAtOnce: the connection is back 50 ms after it drops, and keeps
// nothing to send meanwhile, as the service's push connection.
func reconnectAtOnce(o *nats.Options) error {
	o.ReconnectWait = 50 * time.Millisecond
	o.ReconnectBufSize = -1
	return nil
}

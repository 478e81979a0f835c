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
	env := provtest.Deployment(t, bootstrap.Options{})
	// The client's link is slow, so that its push is still on the way
	// when the server drops the connection.
	link := provtest.SlowLink(t, strings.TrimPrefix(env.Server.URL(), "nats://"), 300*time.Millisecond)
	nc := env.Connect(t, env.Init.ProvisionerCreds, func(o *nats.Options) error {
		o.Url, o.Servers = "nats://"+link, []string{"nats://" + link}
		return nil
	})
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

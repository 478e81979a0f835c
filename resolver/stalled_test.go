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

// TestRequestWithNoServerUpKeepsItsDeadline: the client's link stalls (the
// connection open, nothing answering), so a refresh marks the server down;
// a request then finds no server up and asks the servers first, while a
// Discover holds the refresh. It waited for that Discover, whatever its
// own deadline (or a stop), up to the whole ping timeout.
func TestRequestWithNoServerUpKeepsItsDeadline(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	link, pause := provtest.StallLink(t, strings.TrimPrefix(env.Server.URL(), "nats://"))
	nc := env.Connect(t, env.Init.ProvisionerCreds, func(o *nats.Options) error {
		o.Url, o.Servers = "nats://"+link, []string{"nats://" + link}
		return nil
	})
	const timeout = 2 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("Servers() = %+v, want the one server up", s)
	}
	_, token := newAccount(t, "stalled", operator(t, env.Init.Dir).Signer)

	pause(true)
	ctx := context.Background()
	// The server misses the ping: down, though the connection is up.
	_ = c.Discover(ctx)
	if s := c.Servers(); len(s) != 1 || s[0].Up || !nc.IsConnected() {
		t.Fatalf("Servers() = %+v (connected %v), want the server down, the connection up", s, nc.IsConnected())
	}
	discovering := make(chan struct{})
	go func() {
		defer close(discovering)
		_ = c.Discover(ctx)
	}()
	time.Sleep(100 * time.Millisecond) // the Discover holds the refresh

	const deadline = 300 * time.Millisecond
	rctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	_, err := c.Update(rctx, token)
	took := time.Since(start)
	if !errors.Is(err, provision.ErrNotSent) && !errors.Is(err, provision.ErrTimeout) {
		t.Errorf("Update: %v, want not sent or a timeout", err)
	}
	if took > deadline+500*time.Millisecond {
		t.Errorf("Update with a %s deadline took %s: it waited for the Discover under way past its deadline", deadline, took.Round(time.Millisecond))
	}
	<-discovering
}

package resolver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestLookupStoppedWhileReconnectingWrapsTheStop: a request whose context
// ends (serve's SIGTERM during the start's look-up of its own account)
// while the connection is reconnecting failed with "not connected to NATS
// within 2s", dropping the context's end: service.Run took the stop for a
// failed start, and serve exited 1 instead of 0.
func TestLookupStoppedWhileReconnectingWrapsTheStop(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	c := newClient(t, nc, resolver.Options{Timeout: 30 * time.Second})
	env.Server.Stop()
	for deadline := time.Now().Add(10 * time.Second); !nc.IsReconnecting(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection is not reconnecting")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	_, err := c.LookupAll(ctx, env.Init.SystemAccount)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("LookupAll stopped while reconnecting: %v, want an error that wraps the context's end", err)
	}
}

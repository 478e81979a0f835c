package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestDiscoverCutByCloseFails: Discover waits the whole ping timeout so
// that what must hear from every server (a rotation, a tombstone's drop)
// knows it did. Cut short by Close, it returned nil: heard from every
// server, when it had waited a fraction of the time.
func TestDiscoverCutByCloseFails(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	// Discover waits min(Timeout, 2s): Close comes well inside it.
	c := newClient(t, nc, resolver.Options{Timeout: 10 * time.Second, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	done := make(chan error, 1)
	go func() { done <- c.Discover(context.Background()) }()
	time.Sleep(300 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Discover cut short by Close returned nil, as if it had heard from every server")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Discover did not end after Close")
	}
}

package resolver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestCloseEndsPushWaitingForReconnect: Close says requests still waiting
// end with what they have. A push that waited for the connection to come
// back (the server down) went on waiting its whole timeout after Close.
func TestCloseEndsPushWaitingForReconnect(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	const timeout = 10 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	_, token := newAccount(t, "team", operator(t, env.Init.Dir).Signer)
	env.Server.Stop()
	for deadline := time.Now().Add(10 * time.Second); !nc.IsReconnecting(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connection is not reconnecting")
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Update(context.Background(), token)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	closedAt := time.Now()
	if cerr := c.Close(); cerr != nil {
		t.Logf("Close: %v", cerr)
	}
	err := <-done
	took := time.Since(closedAt)
	if !errors.Is(err, provision.ErrNotSent) {
		t.Errorf("push waiting for the connection, client closed: %v, want ErrNotSent", err)
	}
	if took > timeout/2 {
		t.Errorf("push waiting for the connection ended %s after Close", took.Round(time.Millisecond))
	}
}

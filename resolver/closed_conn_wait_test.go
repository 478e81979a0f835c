package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestConnectionClosedEndsPushWait: the connection closes for good (nats.go
// closed it, or its owner did) while a push waits for the servers' answers.
// No answer can come on it any more, yet the push waited its whole timeout.
func TestConnectionClosedEndsPushWait(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// A slow link: the push is on the way when the connection closes.
	nc := slowConn(t, env, 500*time.Millisecond)
	const timeout = 10 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("Servers() = %+v, want the one server up", s)
	}
	_, token := newAccount(t, "team", operator(t, env.Init.Dir).Signer)
	done := make(chan error, 1)
	go func() {
		_, err := c.Update(context.Background(), token)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	closedAt := time.Now()
	nc.Close()
	err := <-done
	took := time.Since(closedAt)
	t.Logf("push ended %s after the close: %v", took.Round(time.Millisecond), err)
	if err == nil {
		t.Errorf("push across its connection's close: no error")
	}
	if took > timeout/2 {
		t.Errorf("push ended %s after its connection closed: %v", took.Round(time.Millisecond), err)
	}
}

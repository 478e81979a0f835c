package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestPushAcrossOwnReconnectIsSentAgain: the client's connection drops
// while its push is still on the way to the server (a slow link), and is
// back at once. The push was lost with the connection, and the client
// waited the whole timeout for replies that could not come, then failed
// it as unanswered; it is sent again once reconnected, and stored.
func TestPushAcrossOwnReconnectIsSentAgain(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := slowConn(t, env, 300*time.Millisecond, reconnectAtOnce)
	const timeout = 8 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 1 || !s[0].Up {
		t.Fatalf("Servers() = %+v, want the one server up", s)
	}
	// The server has answered a claims request before: its silence is
	// not taken for a resolver that answers none.
	_, first := newAccount(t, "first", operator(t, env.Init.Dir).Signer)
	if r, err := c.Update(context.Background(), first); err != nil || r.Stored() != 1 {
		t.Fatalf("first push: %+v, %v", r, err)
	}
	_, token := newAccount(t, "team", operator(t, env.Init.Dir).Signer)
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		stored int
		err    error
		took   time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		start := time.Now()
		r, err := c.Update(context.Background(), token)
		done <- outcome{r.Stored(), err, time.Since(start)}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := env.Server.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || o.stored != 1 {
		t.Fatalf("push across the client's own reconnect: stored by %d, %v after %s; want it sent again and stored", o.stored, o.err, o.took.Round(time.Millisecond))
	}
	// The reconnect and the resend cross the 300 ms link a few times.
	if o.took > timeout/2 {
		t.Errorf("push across the client's own reconnect took %s", o.took.Round(time.Millisecond))
	}
}

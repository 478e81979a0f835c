package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestLookupAllAcrossOwnReconnectIsSentAgain: the client's connection
// drops while its LOOKUP is still on the way to the server (a slow link),
// and is back at once. Pushes, LIST and VARZ are sent again after the
// client's own reconnect; the LOOKUP was not: it waited the whole timeout
// for replies that could not come, and failed as unanswered.
func TestLookupAllAcrossOwnReconnectIsSentAgain(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := slowConn(t, env, 300*time.Millisecond, reconnectAtOnce)
	const timeout = 8 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Hour, Logger: provtest.Logger(t)})
	pub, token := newAccount(t, "team", operator(t, env.Init.Dir).Signer)
	if r, err := c.Update(context.Background(), token); err != nil || r.Stored() != 1 {
		t.Fatalf("push: %+v, %v", r, err)
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		copies []string
		err    error
		took   time.Duration
	}
	done := make(chan outcome, 1)
	go func() {
		start := time.Now()
		copies, err := c.LookupAll(context.Background(), pub)
		done <- outcome{copies, err, time.Since(start)}
	}()
	time.Sleep(100 * time.Millisecond)
	if err := env.Server.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || len(o.copies) != 1 || o.copies[0] != token {
		t.Fatalf("LookupAll across the client's own reconnect: %d copies, %v after %s; want it sent again and the server's copy", len(o.copies), o.err, o.took.Round(time.Millisecond))
	}
	if o.took > timeout/2 {
		t.Errorf("LookupAll across the client's own reconnect took %s", o.took.Round(time.Millisecond))
	}
}

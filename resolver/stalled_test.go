package resolver_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// stallLink forwards each connection to target, both ways, until paused:
// then it holds what comes (a link that stalls, the connection still
// open) until resumed. It returns the address to connect to and the
// function that pauses (true) or resumes (false) it.
func stallLink(t *testing.T, target string) (string, func(bool)) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	resumed := make(chan struct{})
	close(resumed)
	gate := func() <-chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		return resumed
	}
	pause := func(on bool) {
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-resumed:
			if on {
				resumed = make(chan struct{})
			}
		default:
			if !on {
				close(resumed)
			}
		}
	}
	pipe := func(dst, src net.Conn) {
		defer dst.Close()
		defer src.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				<-gate()
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	t.Cleanup(func() { pause(false) })
	return ln.Addr().String(), pause
}

// TestRequestWithNoServerUpKeepsItsDeadline: the client's link stalls (the
// connection open, nothing answering), so a refresh marks the server down;
// a request then finds no server up and asks the servers first, while a
// Discover holds the refresh. It waited for that Discover, whatever its
// own deadline (or a stop), up to the whole ping timeout.
func TestRequestWithNoServerUpKeepsItsDeadline(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	link, pause := stallLink(t, strings.TrimPrefix(env.Server.URL(), "nats://"))
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

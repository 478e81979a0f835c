package responder_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestStopWhileReconnecting: Stop is called while the responder's
// connection is down, and the server comes back before the connection is
// closed (the service stopping during a server restart, or a responder on a
// connection that outlives it). Stop returns at once, and afterwards nothing
// may listen on the stopped responder's subjects: a subscription drained
// while disconnected is sent again on reconnect by nats.go and then dropped
// locally without an UNSUB, so the server kept routing the endpoint's
// requests (a share of the queue group's, with other instances) to a
// connection that threw them away: callers timed out instead of hearing "no
// responders" or being served by another instance.
func TestStopWhileReconnecting(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	r, err := responder.New(nc, svc.Provision, responder.Config{Prefix: "prov.gone", Name: "gone", Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if rep := provtest.Request(t, admin, "prov.gone.status", `{}`); rep.Code != 0 {
		t.Fatalf("status before the outage: %d %q", rep.Code, rep.Description)
	}

	env.Server.Stop()
	waitConn(t, nc, false)
	start := time.Now()
	if err := r.Stop(); err != nil {
		t.Errorf("Stop while disconnected: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Stop while disconnected took %s", took)
	}

	env.Restart(t)
	waitConn(t, nc, true)
	waitConn(t, admin, true)
	// Both connections have sent their subscriptions again; a round trip
	// on each makes sure the server has them.
	for _, c := range []*nats.Conn{nc, admin} {
		if err := c.FlushTimeout(5 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // nats.go's drain check runs on its own goroutine
	for _, subj := range []string{"prov.gone.status", "$SRV.PING.gone"} {
		_, err := admin.Request(subj, []byte(`{}`), 2*time.Second)
		if !errors.Is(err, nats.ErrNoResponders) {
			t.Errorf("request on %s after Stop and the reconnect: %v, want no responders (the stopped responder still holds the subject on the server)", subj, err)
		}
	}
}

// waitConn waits until nc is connected (or not).
func waitConn(t *testing.T, nc *nats.Conn, connected bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for nc.IsConnected() != connected {
		if time.Now().After(deadline) {
			t.Fatalf("connection %s: connected=%v after 10s", nc.Opts.Name, nc.IsConnected())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStopCancelsRequestsPastStopWait: a request still at work when
// StopWait is up is cancelled, so that a stop fits the grace period a
// container is given (the flush of audit events and user records still
// follows it). Before StopWait, Stop waited for every request in flight
// for as long as its request_timeout, which may be anything: here 60 s.
// The caller hears 504 (the change may have been made), naming the stop.
func TestStopCancelsRequestsPastStopWait(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	defer close(slow.gate)
	const wait = 300 * time.Millisecond
	r := extra(t, env, slow, responder.Config{Prefix: "prov.cut", Name: "cut", RequestTimeout: time.Minute, StopWait: wait})
	ch := make(chan *nats.Msg, 1)
	go func() {
		m, err := admin.Request("prov.cut.account.create", []byte(`{"name":"cut"}`), 20*time.Second)
		if err != nil {
			t.Errorf("create: %v", err)
		}
		ch <- m
	}()
	slow.waitHeld(t, 1)
	start := time.Now()
	if err := r.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	took := time.Since(start)
	if took < wait || took > wait+2*time.Second {
		t.Errorf("Stop with a request held took %s; want StopWait (%s) and little more", took, wait)
	}
	m := <-ch
	if m == nil {
		return
	}
	code, desc := m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error")
	if code != "504" || !strings.Contains(desc, "stopped before the request was done") {
		t.Errorf("the cut request was answered %q %q, want 504 naming the stop", code, desc)
	}
	if now, _ := slow.counts(); now != 0 {
		t.Errorf("%d creates still held after Stop", now)
	}
}

package responder_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
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
	r, err := responder.New(context.Background(), nc, svc.Provision, responder.Config{Prefix: "prov.gone", Name: "gone", Logger: provtest.Logger(t)})
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

// blockedStore holds every account write until its context ends, and
// counts the writes held; it then fails with wrap(ctx.Err()).
type blockedStore struct {
	provision.Store
	wrap func(error) error
	held atomic.Int64
}

func (b *blockedStore) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	b.held.Add(1)
	<-ctx.Done()
	return 0, b.wrap(ctx.Err())
}

// TestStopCutsChangesPastStopWait: an account.update whose store write
// hangs (a store outage) is cut at StopWait like any other request, and
// answered 504 naming the stop (the write may have landed). A change runs
// on its account's worker under a deadline of its own (changeTimeout,
// 2 min) that the request's context does not end, so Stop, and the
// domain's Close after it, waited the 2 min. The JetStream store answers a
// cancelled write unavailable (kvstore's transient): that was answered
// 503 "retry", as if nothing had been written.
func TestStopCutsChangesPastStopWait(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		wrap func(error) error
	}{
		{"cancelled", func(err error) error { return err }},
		{"unavailable", func(err error) error { return fmt.Errorf("%w: kv update: %w", provision.ErrUnavailable, err) }},
		{"unavailable without the cause", func(err error) error { return fmt.Errorf("%w: kv update: %v", provision.ErrUnavailable, err) }},
	}
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if _, err := svc.Provision.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &blockedStore{Store: svc.Store, wrap: tt.wrap}
			p, err := provision.New(provision.Config{Operator: svc.Operator, Store: store, Resolver: svc.Resolver, Logger: provtest.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			stopCuts(t, env, admin, p, "account.update", `{"account":"acme","tags":["x"]}`, "in its store write", func() bool { return store.held.Load() > 0 })
		})
	}
}

// heldResolver pushes the first account JWT and then holds its answer
// until the context ends, as a push whose acknowledgements are lost; it
// holds every later push unsent until its context ends.
type heldResolver struct {
	provision.Resolver
	pushes atomic.Int64
	first  atomic.Pointer[string]
}

func (h *heldResolver) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if h.pushes.Add(1) == 1 {
		h.first.Store(&token)
		h.Resolver.Update(ctx, token)
	}
	<-ctx.Done()
	return nil, fmt.Errorf("%w: push: %w", provision.ErrTimeout, ctx.Err())
}

// firstPushed is the JWT of the one push that reached the servers.
func (h *heldResolver) firstPushed() string {
	if p := h.first.Load(); p != nil {
		return *p
	}
	return ""
}

// TestStopCutsCreateDuringPush: an account.create whose push reached the
// servers but is not acknowledged when StopWait is up. Its take-back
// (abandon) pushes the disabled version under a deadline of its own
// (changeTimeout): Stop and Close waited for it. The caller hears 504 (the
// account may be live), and after a restart on the same store a reconcile
// pass leaves the servers holding what the store holds.
func TestStopCutsCreateDuringPush(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	res := &heldResolver{Resolver: svc.Resolver}
	p, err := provision.New(provision.Config{Operator: svc.Operator, Store: svc.Store, Resolver: res, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	stopCuts(t, env, admin, p, "account.create", `{"name":"cut"}`, "in its push", func() bool { return res.pushes.Load() > 0 })
	// The restart: the running service on the same store reconciles.
	ctx := context.Background()
	if _, err := svc.Provision.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	a, err := svc.Store.AccountByName(ctx, "cut")
	if errors.Is(err, provision.ErrNotFound) {
		// The take-back got through before the cut (the stop's timing
		// decides): the store holds it deleted, and so must the servers.
		token := res.firstPushed()
		c, derr := jwt.DecodeAccountClaims(token)
		if derr != nil {
			t.Fatalf("the cut create is not in the store, and its pushed JWT cannot be read: %v", derr)
		}
		if got, err := svc.Resolver.Lookup(ctx, c.Subject); err != nil || got != "" {
			t.Errorf("the cut create, taken back in the store, is still on the server: %.40q (%v)", got, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if got, err := svc.Resolver.Lookup(ctx, a.PublicKey); err != nil || got != a.JWT {
		t.Errorf("after a reconcile pass the server holds %.40q (%v), the store %.40q", got, err, a.JWT)
	}
}

// stopCuts sends body to op on a responder of p (StopWait 300 ms, its
// requests a minute), waits until held says the request is held, and stops
// the responder and closes p: both must be done within StopWait and a
// little more, and the request be answered 504 naming the stop.
func stopCuts(t *testing.T, env *provtest.Env, admin *nats.Conn, p *provision.Service, op, body, where string, held func() bool) {
	t.Helper()
	const wait = 300 * time.Millisecond
	r := extra(t, env, p, responder.Config{Prefix: "prov.cut", Name: "cut", RequestTimeout: time.Minute, StopWait: wait, Cut: p.Halt})
	ch := make(chan *nats.Msg, 1)
	go func() {
		m, err := admin.Request("prov.cut."+op, []byte(body), time.Minute)
		if err != nil {
			t.Errorf("%s: %v", op, err)
		}
		ch <- m
	}()
	for deadline := time.Now().Add(5 * time.Second); !held(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the %s was not held %s", op, where)
		}
	}
	start := time.Now()
	stopped := make(chan struct{})
	go func() {
		r.Stop()
		p.Close()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(wait + 3*time.Second):
		t.Fatalf("Stop and Close with a %s held %s still at work after %s; want StopWait (%s) and little more", op, where, time.Since(start), wait)
	}
	if m := <-ch; m != nil {
		code, desc := m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error")
		if code != "504" || !strings.Contains(desc, "stopped before the request was done") {
			t.Errorf("the cut %s was answered %q %q, want 504 naming the stop", op, code, desc)
		}
	}
}

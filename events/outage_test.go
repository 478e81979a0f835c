package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// lossLog records what a publisher logs at level Error.
type lossLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *lossLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *lossLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *lossLog) WithGroup(string) slog.Handler                { return h }
func (h *lossLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// lost sums the "lost" attribute of the records: how many audit events
// the publisher said it lost.
func (h *lossLog) lost() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for _, r := range h.recs {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "lost" {
				n += a.Value.Int64()
			}
			return true
		})
	}
	return n
}

// auditSetupLogged is auditSetup with a publisher whose errors are kept.
func auditSetupLogged(t *testing.T) (*provtest.Env, *nats.Conn, *events.Publisher, *lossLog) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := auditConn(t, env)
	logs := &lossLog{}
	pub := events.New(sys, "prov", slog.New(logs))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	return env, svc, pub, logs
}

// restart starts the deployment's server again after env.Server.Stop.
func restart(t *testing.T, env *provtest.Env) {
	t.Helper()
	srv, err := natsembed.Start(env.Init.ServerConf, natsembed.Options{Port: env.Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
}

// stored reads acct's audit and returns how many times each user name
// was stored, and the names in stream order.
func stored(t *testing.T, svc *nats.Conn) (map[string]int, []string) {
	t.Helper()
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	got := userNames(t, audit, acct)
	seen := map[string]int{}
	for _, n := range got {
		seen[n]++
	}
	return seen, got
}

// TestPublishDoesNotWaitForTheAuditStream: Publish is what provision's
// emit calls after each change, before the change's reply. With the
// server down it must return at once however far the audit writes fall
// behind, on one replica (writes one by one) as on several (batches);
// what does not fit the writer's bound is dropped, and each event dropped
// is counted and logged: stored + lost is every event published.
func TestPublishDoesNotWaitForTheAuditStream(t *testing.T) {
	t.Parallel()
	for _, batches := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-by-one", true: "batches"}[batches], func(t *testing.T) {
			env, svc, pub, logs := auditSetupLogged(t)
			ctx := context.Background()
			if batches {
				pub.ForceBatches() // as on a replicated stream
			}
			env.Server.Stop()
			const n = 6000
			var slowest time.Duration
			start := time.Now()
			sent := 0
			for ; sent < n && time.Since(start) < 3*time.Second; sent++ {
				s := time.Now()
				pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(sent)})
				slowest = max(slowest, time.Since(s))
			}
			took := time.Since(start)
			restart(t, env)
			if sent < n || slowest > 500*time.Millisecond {
				t.Fatalf("with the server down, %d Publish calls took %v (the slowest %v); want all %d at once", sent, took, slowest, n)
			}
			err := pub.Flush(20 * time.Second)
			seen, _ := stored(t, svc)
			for name, c := range seen {
				if c != 1 {
					t.Errorf("event %s stored %d times", name, c)
				}
			}
			lost := pub.Lost()
			if int64(len(seen))+lost != n {
				t.Fatalf("%d events stored and %d counted lost, of %d published (Flush: %v)", len(seen), lost, n, err)
			}
			if logged := logs.lost(); logged != lost {
				t.Fatalf("%d events lost, %d logged as lost", lost, logged)
			}
			t.Logf("%d stored, %d lost (Flush: %v)", len(seen), lost, err)
		})
	}
}

// TestAuditOrderKeptAcrossAFailedWrite: events whose writes were on their
// way when the server went away are written again before the events
// published after them: an account's events are stored once each, in the
// order they were published. (They were written again each in a goroutine
// of its own, after a sleep, while the later events went on.)
func TestAuditOrderKeptAcrossAFailedWrite(t *testing.T) {
	env, svc, pub, _ := auditSetupLogged(t)
	send := func(from, to int) { publishUsers(pub, from, to) }
	send(0, 100)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	send(100, 150) // on their way when the server goes
	env.Server.Stop()
	send(150, 200)
	time.Sleep(time.Second)
	send(200, 250)
	restart(t, env)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	storedOnceInOrder(t, svc, 250)
}

// TestAnOutageLongerThanTheRetriesLosesNothing: the retries of a write
// took 4 attempts of auditTimeout (10s) and 2s of back-off, 42s, after
// which the event was logged as lost (52s for an event published during
// the outage, whose first write waits auditTimeout for its answer); yet
// nats.go kept its copies while disconnected and sent them on reconnect,
// so events logged as lost were stored after all. Now nothing is given up
// while the stream is only away: an outage loses nothing while at most
// auditMaxQueue events wait (TestPublishDoesNotWaitForTheAuditStream
// checks the count past it). auditTimeout is cut to 1s here, which makes
// the 42s budget 6s.
func TestAnOutageLongerThanTheRetriesLosesNothing(t *testing.T) {
	t.Cleanup(events.SetAuditTimeout(time.Second))
	env, svc, pub, logs := auditSetupLogged(t)
	send := func(from, to int) { publishUsers(pub, from, to) }
	send(0, 100)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	env.Server.Stop()
	time.Sleep(300 * time.Millisecond)
	send(100, 200)
	time.Sleep(9 * time.Second) // 1s for the first answer, 6s of retries, and some
	restart(t, env)
	err := pub.Flush(20 * time.Second)
	seen, got := stored(t, svc)
	missing := 0
	for i := range 200 {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			missing++
			t.Errorf("event %d stored %d times", i, c)
		}
	}
	if lost, logged := pub.Lost(), logs.lost(); lost != 0 || logged != 0 || err != nil {
		t.Fatalf("%d events counted lost, %d logged as lost, %d not stored once (Flush: %v)", lost, logged, missing, err)
	}
	for i, name := range got {
		if name != fmt.Sprint(i) {
			t.Fatalf("event %d of the audit is %s: not in publish order", i, name)
		}
	}
}

// TestARefusedEventIsGivenUp: an event the stream refuses (here, too
// large for it) is not tried forever, which would hold every event after
// it: after auditAttempts refusals it is given up, counted and logged, and
// the events after it are stored.
func TestARefusedEventIsGivenUp(t *testing.T) {
	t.Parallel()
	_, svc, pub, logs := auditSetupLogged(t)
	ctx := context.Background()
	restore := changeAudit(t, svc, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 10 })
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "refused"})
	if err := pub.Flush(10 * time.Second); err == nil || !strings.Contains(err.Error(), "1 audit writes lost") {
		t.Fatalf("Flush: %v, want 1 lost", err)
	}
	restore()
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "stored"})
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if _, got := stored(t, svc); fmt.Sprint(got) != "[stored]" || pub.Lost() != 1 || logs.lost() != 1 {
		t.Fatalf("stored %v, %d lost, %d logged lost; want [stored], 1, 1", got, pub.Lost(), logs.lost())
	}
}

// changeAudit changes the audit stream's config with change, and returns
// what puts back the config it had.
func changeAudit(t *testing.T, svc *nats.Conn, change func(*jetstream.StreamConfig)) (restore func()) {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	was := stream.CachedInfo().Config
	cfg := was
	change(&cfg)
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if _, err := js.UpdateStream(ctx, was); err != nil {
			t.Fatal(err)
		}
	}
}

// auditConn connects as the service user without a reconnect buffer, as
// the audit stream's connection must be (WithAudit).
func auditConn(t *testing.T, env *provtest.Env) *nats.Conn {
	t.Helper()
	return env.Connect(t, env.Init.ServiceCreds, nats.ReconnectBufSize(-1))
}

// auditPublisher is a publisher of sys's events that writes them to the
// audit stream (one replica) on a connection of its own, as the service's.
func auditPublisher(t *testing.T, env *provtest.Env, sys *nats.Conn) *events.Publisher {
	t.Helper()
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(context.Background(), auditConn(t, env), 1); err != nil {
		t.Fatal(err)
	}
	return pub
}

// cutConn is a client's socket that dies, once armed, at the first large
// write (a window of audit writes being flushed): what follows is dropped
// as a dead peer's socket would, mid-window.
type cutConn struct {
	net.Conn
	armed *atomic.Bool
	dead  atomic.Bool
}

func (c *cutConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		// Slow, so that the read loop, which met the cut, takes the
		// connection's lock before the writer is through its window.
		time.Sleep(3 * time.Millisecond)
		return len(b), nil
	}
	n, err := c.Conn.Write(b)
	if len(b) >= 32*1024 && c.armed.CompareAndSwap(true, false) {
		c.dead.Store(true)
		c.Conn.Close()
	}
	return n, err
}

// cutDialer dials cutConns.
type cutDialer struct{ armed atomic.Bool }

func (d *cutDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return &cutConn{Conn: c, armed: &d.armed}, nil
}

// TestAuditOrderKeptAcrossACutWindow: the connection dies while the
// writer sends a window of events. On a connection with a reconnect
// buffer, nats.go kept the window's later writes and sent them first on
// reconnect, before the writer's retries of the earlier ones, which
// failed with the cut: stored out of order (5 runs in 6). WithAudit now
// refuses such a connection, and on one without a buffer the order holds.
func TestAuditOrderKeptAcrossACutWindow(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(context.Background(), env.ServiceUser(t), 1); !errors.Is(err, events.ErrReconnectBuffer) {
		t.Fatalf("WithAudit on a connection with a reconnect buffer: %v, want ErrReconnectBuffer", err)
	}
	d := &cutDialer{}
	svc := env.Connect(t, env.Init.ServiceCreds, nats.SetCustomDialer(d), nats.ReconnectBufSize(-1))
	if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
		t.Fatal(err)
	}
	env.Server.Stop()
	publishUsers(pub, 0, 500)
	d.armed.Store(true)
	restart(t, env)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	storedOnceInOrder(t, svc, 500)
}

// storedOnceInOrder checks that acct's audit holds the events named 0 to
// n-1, each once, in that order.
func storedOnceInOrder(t *testing.T, svc *nats.Conn, n int) {
	t.Helper()
	seen, got := stored(t, svc)
	for i := range n {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Errorf("event %d stored %d times", i, c)
		}
	}
	for i, name := range got {
		if name != fmt.Sprint(i) {
			t.Fatalf("event %d of the audit is %s, not %d: not in publish order (from %d: %v)", i, name, i, i, got[i:min(len(got), i+10)])
		}
	}
}

// publishUsers publishes, for acct, the user.created events of the users
// named from to to-1, in that order.
func publishUsers(pub *events.Publisher, from, to int) {
	for i := from; i < to; i++ {
		pub.Publish(context.Background(), api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
}

package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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
	svc := env.ServiceUser(t)
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
	ctx := context.Background()
	send := func(from, to int) {
		for i := from; i < to; i++ {
			pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
		}
	}
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
	seen, got := stored(t, svc)
	for i := range 250 {
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

package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestAuditTwoInstancesAnswersLostPastTheWindow: two instances write to
// one audit stream; the answers of writes of each are lost past the
// duplicate window while the other writes, so that each one's look
// (storedAfter) reads the other's events too. Each event is stored once.
func TestAuditTwoInstancesAnswersLostPastTheWindow(t *testing.T) {
	t.Cleanup(events.SetAuditTimeout(300 * time.Millisecond))
	t.Cleanup(events.SetAuditDuplicates(time.Second))
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	type instance struct {
		d    *deafDialer
		svc  *nats.Conn
		pub  *events.Publisher
		logs *lossLog
	}
	var in [2]instance
	for i := range in {
		d := &deafDialer{}
		svc := env.Connect(t, env.Init.ServiceCreds, nats.SetCustomDialer(d), nats.ReconnectBufSize(-1))
		logs := &lossLog{}
		pub := events.New(env.Connect(t, env.Init.ProvisionerCreds), "prov", slog.New(logs))
		if err := pub.WithAudit(context.Background(), svc, 1); err != nil {
			t.Fatal(err)
		}
		in[i] = instance{d, svc, pub, logs}
	}
	a, b := in[0], in[1]
	publishUsers(a.pub, 0, 1)
	publishUsers(b.pub, 100, 101)
	for _, x := range in {
		if err := x.pub.Flush(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	a.d.deaf.Store(true)
	publishUsers(a.pub, 1, 3) // stored, their answers lost
	time.Sleep(100 * time.Millisecond)
	publishUsers(b.pub, 101, 110)
	if err := b.pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	b.d.deaf.Store(true)
	publishUsers(b.pub, 110, 112) // stored, their answers lost
	time.Sleep(2 * time.Second)
	for _, x := range in {
		x.d.deaf.Store(false)
		x.d.mu.Lock()
		x.d.last.Close() // nats.go reconnects, and the writer's look is answered
		x.d.mu.Unlock()
	}
	publishUsers(a.pub, 3, 5)
	publishUsers(b.pub, 112, 113)
	for _, x := range in {
		if err := x.pub.Flush(20 * time.Second); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if x.pub.Lost() != 0 || x.logs.lost() != 0 {
			t.Fatalf("%d lost, %d logged lost", x.pub.Lost(), x.logs.lost())
		}
	}
	seen, got := stored(t, a.svc)
	for _, r := range [][2]int{{0, 5}, {100, 113}} {
		for i := r[0]; i < r[1]; i++ {
			if c := seen[fmt.Sprint(i)]; c != 1 {
				t.Errorf("event %d stored %d times (%v)", i, c, got)
			}
		}
	}
}

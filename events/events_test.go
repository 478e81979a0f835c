package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// TestAuditWritesSurviveAnOutage: audit writes are asynchronous; events
// published while the server is down are stored once it is back, each
// exactly once, and Flush returns once they are stored; without an
// outage they are stored in publish order.
func TestAuditWritesSurviveAnOutage(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	ctx := context.Background()
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(ctx, svc, 1); err != nil {
		t.Fatal(err)
	}
	const acct = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWX"
	send := func(from, to int) {
		for i := from; i < to; i++ {
			pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
		}
	}
	send(0, 200)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	// The server goes away with writes in flight, and more are made
	// while it is down.
	send(200, 230)
	env.Server.Stop()
	send(230, 260)
	time.Sleep(300 * time.Millisecond)
	srv, err := natsembed.Start(env.Init.ServerConf, natsembed.Options{Port: env.Port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	send(260, 300)
	if err := pub.Flush(30 * time.Second); err != nil {
		t.Fatalf("Flush: %v", err)
	}

	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for after := uint64(0); ; {
		page, next, err := audit.Page(ctx, acct, after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.Event.UserName)
		}
		if next == 0 {
			break
		}
		after = next
	}
	seen := map[string]int{}
	for _, n := range got {
		seen[n]++
	}
	for i := range 300 {
		if c := seen[fmt.Sprint(i)]; c != 1 {
			t.Errorf("event %d stored %d times", i, c)
		}
	}
	// Flushed before the outage: in publish order.
	for i := range 200 {
		if i >= len(got) || got[i] != fmt.Sprint(i) {
			t.Fatalf("event %d of the audit is %v, want %d (publish order)", i, got[min(i, len(got)-1)], i)
		}
	}
}

package events_test

import (
	"context"
	"errors"
	"fmt"
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

// TestAuditWritesSurviveAnOutage: audit writes are asynchronous; events
// published while the server is down are stored once it is back, each
// exactly once, and Flush returns once they are stored; without an
// outage they are stored in publish order.
func TestAuditWritesSurviveAnOutage(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	pub := auditPublisher(t, env, sys)
	send := func(from, to int) { publishUsers(pub, from, to) }
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

	seen, got := stored(t, svc)
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

// TestAuditWritesGoInBatches: on a replicated audit stream, events
// published faster than the writer's linger go in atomic batches, each
// event once and in publish order; on one replica they go one by one; a
// stream made without atomic batches (by an older version) is given them.
func TestAuditWritesGoInBatches(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	ctx := context.Background()
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	// The stream as the previous version made it.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{"prov.audit.>"},
		MaxAge: 365 * 24 * time.Hour, MaxBytes: events.AuditMaxBytes, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	pub := auditPublisher(t, env, sys)
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if !stream.CachedInfo().Config.AllowAtomicPublish {
		t.Fatalf("the audit stream does not allow atomic batches after WithAudit")
	}
	const acct = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567ABCDEFGHIJKLMNOPQRSTUVWX"
	// On one replica the writer sends events one by one.
	for i := range 100 {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct[:len(acct)-1] + "Y", UserName: fmt.Sprint(i)})
	}
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if b := pub.Batches(); b != 0 {
		t.Fatalf("%d atomic batches on one replica, want none", b)
	}
	// With replicas it batches; a test server has one.
	pub.ForceBatches()
	const n = 1000
	for i := range n {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	if err := pub.Close(10 * time.Second); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if b := pub.Batches(); b < 1 || b > n/16 {
		t.Errorf("%d events went in %d atomic batches; want batches of at least 16", n, b)
	}
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	got := userNames(t, audit, acct)
	if len(got) != n {
		t.Fatalf("%d events in the audit stream, want %d", len(got), n)
	}
	for i, name := range got {
		if name != fmt.Sprint(i) {
			t.Fatalf("event %d of the audit is %s: not in publish order", i, name)
		}
	}
	// After Close, an event is still stored (one by one).
	pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: "late"})
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last, _, _, err := audit.Page(ctx, acct, info.State.LastSeq-1, time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 100+n+1 || len(last) != 1 || last[0].Event.UserName != "late" {
		t.Fatalf("after Close: %d events, the last %v; want %d, the late one last", info.State.Msgs, last, 100+n+1)
	}
}

// userNames reads an account's whole audit, page by page, and returns the
// user names of its events in stream order.
func userNames(t *testing.T, audit *events.Audit, acct string) []string {
	t.Helper()
	var got []string
	for after := uint64(0); ; {
		// A leader change of the stream may still be settling (a test
		// steps it down): a page finds no responders meanwhile, as
		// prov.audit answers 503. Each page is asked again for a while.
		page, next, _, err := audit.Page(context.Background(), acct, after, time.Time{}, 1000)
		for deadline := time.Now().Add(20 * time.Second); err != nil && errors.Is(err, nats.ErrNoResponders) && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			page, next, _, err = audit.Page(context.Background(), acct, after, time.Time{}, 1000)
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.Event.UserName)
		}
		if next == 0 {
			return got
		}
		after = next
	}
}

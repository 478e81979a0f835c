package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/events"
)

// TestPagingLeavesNoConsumers: each Page reads through a consumer of the
// audit stream. One left behind (until its inactive threshold) per page
// counted against the server's limit of consumers per stream (1,000 by
// default), so that a script paging through the audit failed at its
// thousandth page within a few seconds, and every prov.audit after it
// answered 503 until they expired.
func TestPagingLeavesNoConsumers(t *testing.T) {
	t.Parallel()
	_, svc, pub := auditSetup(t)
	ctx := context.Background()
	// Fewer pages than the server's limit: a consumer left behind by any
	// page is still there (its 5 s threshold) when the count below is read.
	const n = 100
	for i := range n {
		pub.Publish(ctx, api.Event{Type: api.EventUserCreated, Account: acct, UserName: fmt.Sprint(i)})
	}
	if err := pub.Flush(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	audit, err := events.NewAudit(svc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for after := uint64(0); ; {
		page, next, _, err := audit.Page(ctx, acct, after, time.Time{}, 1)
		if err != nil {
			t.Fatalf("page %d: %v", len(got)+1, err)
		}
		for _, e := range page {
			got = append(got, e.Event.UserName)
		}
		if next == 0 {
			break
		}
		after = next
	}
	if len(got) != n {
		t.Fatalf("paged %d events, want %d", len(got), n)
	}
	for i, name := range got {
		if name != fmt.Sprint(i) {
			t.Fatalf("event %d paged is %s", i, name)
		}
	}
	js, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := info.State.Consumers; c != 0 {
		t.Fatalf("%d consumers of the audit stream left after paging, want 0", c)
	}
}

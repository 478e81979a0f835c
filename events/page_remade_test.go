package events_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provision"
)

// TestPageOfAStreamMadeAgainWhileRead: the audit stream is deleted and
// made again between a page's read of the stream's info and the create of
// its consumer. The page read the new stream but said it was of the old
// one: a cursor of the old stream went on in the new one without the
// conflict its creation time is sent for (its first records skipped, the
// others taken for the old stream's), and a page from 0 gave the old
// stream's creation time with the new stream's records.
func TestPageOfAStreamMadeAgainWhileRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		fromCursor   bool // page on from the first page's cursor, else from 0
		wantConflict bool
	}{
		{name: "from a cursor", fromCursor: true, wantConflict: true},
		{name: "from 0", fromCursor: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, svc, pub, _ := auditSetupLogged(t)
			ctx := context.Background()
			audit, err := events.NewAudit(svc, "prov")
			if err != nil {
				t.Fatal(err)
			}
			publishUsers(pub, 0, 10)
			if err := pub.Flush(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			_, next, made, err := audit.Page(ctx, acct, 0, time.Time{}, 4)
			if err != nil || next == 0 {
				t.Fatalf("first page: next %d, %v", next, err)
			}
			js, err := jetstream.New(operatorConn(t, env))
			if err != nil {
				t.Fatal(err)
			}
			remade := false
			audit.SetBeforeConsumer(func() {
				if remade {
					return
				}
				remade = true
				if err := js.DeleteStream(ctx, events.StreamName); err != nil {
					t.Errorf("delete the audit stream: %v", err)
				}
				// The writer makes the stream again with these.
				publishUsers(pub, 10, 20)
				if err := pub.Flush(10 * time.Second); err != nil {
					t.Errorf("Flush after the audit stream was deleted: %v", err)
				}
			})
			after, sent := uint64(0), time.Time{}
			if tt.fromCursor {
				after, sent = next, made
			}
			page, _, got, err := audit.Page(ctx, acct, after, sent, 4)
			if !remade {
				t.Fatal("the stream was not made again within the page")
			}
			if tt.wantConflict {
				if !errors.Is(err, provision.ErrConflict) {
					t.Fatalf("page on from %d of the stream made at %s: %d events made at %s, %v; want a conflict", after, made, len(page), got, err)
				}
				return
			}
			st, serr := js.Stream(ctx, events.StreamName)
			if serr != nil {
				t.Fatal(serr)
			}
			now := st.CachedInfo().Created
			if err != nil || len(page) != 4 || page[0].Event.UserName != "10" || !got.Equal(now) {
				t.Fatalf("page from 0: %d events (first %v) made at %s, %v; want 4 from user 10 of the stream made at %s (the old one was made at %s)", len(page), page, got, err, now, made)
			}
		})
	}
}

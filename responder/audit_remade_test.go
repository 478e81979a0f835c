package responder_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestAuditCursorFromAStreamMadeAgain: an operator deletes the audit
// stream and the next event makes it again, its sequences starting over
// at 1. A client that pages the audit as README says (following next,
// then polling from the last sequence it read) sent its old cursor, past
// the end of the new stream, and was answered an empty page, as if
// nothing had happened since: the records of the new stream were skipped,
// silently, until it grew past the old cursor. A cursor past the stream's
// last sequence cannot be from this stream: it is refused, saying why and
// to page again from 0.
func TestAuditCursorFromAStreamMadeAgain(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	for _, name := range []string{"a1", "a2", "a3", "a4", "a5"} {
		h.ok(t, "account.create", map[string]any{"name": name})
	}
	// The client reads the audit up to its last record.
	last := uint64(0)
	for deadline := time.Now().Add(5 * time.Second); last < 5; {
		var p api.AuditReply
		r := h.req(t, "audit", map[string]any{"after": last})
		if r.Code != 0 {
			t.Fatalf("audit: %d %q", r.Code, r.Description)
		}
		json.Unmarshal(r.Raw, &p)
		for _, e := range p.Events {
			last = e.Seq
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit holds %d events, want 5", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An operator deletes the stream (the service's user may not); the
	// next change's event makes it again.
	op := env.Connect(t, env.ServiceAccountCreds(t, "operator", jwt.Permissions{}))
	js, err := jetstream.New(op)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	h.ok(t, "account.create", `{"name":"after-remake"}`)
	for deadline := time.Now().Add(10 * time.Second); ; {
		r := h.req(t, "audit", `{}`)
		var p api.AuditReply
		json.Unmarshal(r.Raw, &p)
		if r.Code == 0 && len(p.Events) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit stream was not made again: %d %q %s", r.Code, r.Description, r.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The client polls on from its cursor.
	r := h.req(t, "audit", map[string]any{"after": last})
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"after"`) || !strings.Contains(r.Description, "from 0") {
		t.Fatalf("audit after %d, past the end of the stream made again: %d %q %s; want 400 naming \"after\" and to page again from 0 (the new stream's record is skipped)", last, r.Code, r.Description, r.Raw)
	}
}

// TestAuditCursorFromAStreamMadeAgainThatGrewPast: as above, but the new
// stream has grown past the old cursor before the client polls again: a
// bare "after" is then a position in the new stream, read as one, its
// first records skipped without a word. The cursor with the stream's
// creation time a reply gives (stream_created) is refused as a conflict,
// saying to page again from 0, which reads the new stream whole.
func TestAuditCursorFromAStreamMadeAgainThatGrewPast(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	// page reads the audit from after (with the stream's creation time
	// made, when not zero) until it holds want events.
	page := func(t *testing.T, want int) api.AuditReply {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			var p api.AuditReply
			r := h.req(t, "audit", `{}`)
			if r.Code != 0 {
				t.Fatalf("audit: %d %q", r.Code, r.Description)
			}
			if err := json.Unmarshal(r.Raw, &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Events) == want {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("the audit holds %d events, want %d", len(p.Events), want)
			}
		}
	}
	for _, name := range []string{"a1", "a2", "a3"} {
		h.ok(t, "account.create", map[string]any{"name": name})
	}
	old := page(t, 3)
	last := old.Events[len(old.Events)-1].Seq
	if old.StreamCreated.IsZero() {
		t.Fatalf("the audit's reply gives no stream_created: %+v", old)
	}
	op := env.Connect(t, env.ServiceAccountCreds(t, "operator", jwt.Permissions{}))
	js, err := jetstream.New(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), events.StreamName); err != nil {
		t.Fatal(err)
	}
	// The new stream grows past the old cursor.
	for _, name := range []string{"b1", "b2", "b3", "b4", "b5"} {
		h.ok(t, "account.create", map[string]any{"name": name})
	}
	now := page(t, 5)
	if now.StreamCreated.Equal(old.StreamCreated) {
		t.Fatalf("the stream made again gives the same stream_created %s", now.StreamCreated)
	}
	r := h.req(t, "audit", map[string]any{"after": last, "stream_created": old.StreamCreated})
	if r.Code != api.CodeConflict || !strings.Contains(r.Description, "from 0") {
		t.Fatalf("audit after %d of the stream made at %s, the stream made again since and grown past it: %d %q %s; want 409 saying to page again from 0 (the new stream's first records are skipped)",
			last, old.StreamCreated, r.Code, r.Description, r.Raw)
	}
	// The cursor of the stream as it is now is read on.
	r = h.req(t, "audit", map[string]any{"after": now.Events[1].Seq, "stream_created": now.StreamCreated})
	var p api.AuditReply
	if err := json.Unmarshal(r.Raw, &p); r.Code != 0 || err != nil || len(p.Events) != 3 || !p.StreamCreated.Equal(now.StreamCreated) {
		t.Fatalf("audit after %d of the stream as it is: %d %q %s; want its last 3 events", now.Events[1].Seq, r.Code, r.Description, r.Raw)
	}
}

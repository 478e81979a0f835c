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

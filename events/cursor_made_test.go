package events_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provision"
)

// TestAuditCursorKeepsItsStream: the stream's creation time a page gives
// with its cursor stays the same while the stream does, through another
// start of the service (which updates the stream's config) and a restart
// of the server, so that a client paging on is never told the stream was
// made again when it was not; a page with a creation time the stream does
// not have is a conflict.
func TestAuditCursorKeepsItsStream(t *testing.T) {
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
	page, next, made, err := audit.Page(ctx, acct, 0, time.Time{}, 4)
	if err != nil || len(page) != 4 || next == 0 || made.IsZero() {
		t.Fatalf("first page: %d events, next %d, made %s, %v; want 4, more, when the stream was made", len(page), next, made, err)
	}
	// Another start of the service updates the stream's config.
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	again := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := again.WithAudit(ctx, auditConn(t, env), 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Close(time.Second) })
	page, next, now, err := audit.Page(ctx, acct, next, made, 4)
	if err != nil || len(page) != 4 || !now.Equal(made) {
		t.Fatalf("after another start: %d events, made %s, %v; want 4 of the stream made at %s", len(page), now, err, made)
	}
	env.Server.Stop()
	restart(t, env)
	// Until the connection is back and the stream loaded, pages fail.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		page, _, now, err = audit.Page(ctx, acct, next, made, 4)
		if err == nil || errors.Is(err, provision.ErrConflict) || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(page) != 2 || !now.Equal(made) {
		t.Fatalf("after a restart of the server: %d events, made %s, %v; want the last 2 of the stream made at %s", len(page), now, err, made)
	}
	if _, _, _, err := audit.Page(ctx, acct, next, made.Add(time.Nanosecond), 4); !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("a page with a creation time the stream does not have: %v, want a conflict", err)
	}
}

package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestReconcileNamesAJWTOverAShrunkMaxPayload: an account signed while the
// servers' max_payload was larger, and over it since (the limit was
// lowered), cannot be pushed: every pass failed it with nats.go's
// "maximum payload exceeded" under "could not bring an account in line;
// the next pass tries again", a delivery failure that no retry fixes. The
// log must say the JWT is too large for the servers' max_payload, and what
// to do, at Error and once (not at Warn every 30 s for ever), and not that
// the next pass tries again.
func TestReconcileNamesAJWTOverAShrunkMaxPayload(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	// About 30 KB of subjects: an account JWT of about 40 KB (base64).
	var subjects []string
	for i := range 1000 {
		subjects = append(subjects, fmt.Sprintf("telemetry.%04d.readings.>", i))
	}
	admin := env.Admin(t)
	rep := provtest.Request(t, admin, "prov.account.create", map[string]any{"name": "big", "default_permissions": map[string]any{"pub": map[string]any{"allow": subjects}}})
	if rep.Code != 0 {
		t.Fatalf("create: %d %s", rep.Code, rep.Description)
	}
	var made api.AccountReply
	if err := json.Unmarshal(rep.Raw, &made); err != nil {
		t.Fatal(err)
	}
	svc.Stop()
	admin.Close()

	// The server loses its copy (a new server, say) and its max_payload
	// is lowered under the JWT.
	env.Server.Stop()
	if err := os.Remove(filepath.Join(env.Init.Server.ResolverDir, made.Account.PublicKey+".jwt")); err != nil {
		t.Fatal(err)
	}
	env.SetMaxPayload(t, 32768)
	logs := &syncBuf{}
	svc, err := service.Start(context.Background(), env.Config, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	admin = env.Admin(t)
	// Two passes: the second does not log it again.
	for range 2 {
		r := provtest.Request(t, admin, "prov.reconcile", map[string]any{})
		var sum api.ReconcileReply
		if err := json.Unmarshal(r.Raw, &sum); err != nil {
			t.Fatalf("reconcile: %d %s", r.Code, r.Description)
		}
		if sum.Failed == 0 {
			t.Fatalf("reconcile: %+v, want the account over max_payload failed", sum)
		}
	}
	time.Sleep(100 * time.Millisecond)
	var lines []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, made.Account.PublicKey) && (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("two passes logged the account over max_payload %d times at Warn or Error, want once: %q", len(lines), lines)
	}
	line := lines[0]
	if !strings.Contains(line, "max_payload") || !strings.Contains(line, "revocations") {
		t.Errorf("the reconcile's log of the account over max_payload: %q, want it too large for max_payload named, and what to do", line)
	}
	if !strings.Contains(line, "level=ERROR") || strings.Contains(line, "next pass tries again") || !strings.Contains(line, "no pass will") {
		t.Errorf("the reconcile's log of the account over max_payload: %q, want it at Error, saying no pass will bring it in line by itself", line)
	}
}

package events_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestLimitsChangedFromTiersLosesNoAuditEvent: the service account's
// JetStream limits change between tiered and flat (README's advice for a
// deployment made before the tiers, or back). The server keeps the audit
// stream in the tier it was made under, and refuses every write to it
// (10120, "no JetStream default or applicable tiered limit present") until
// it is restarted. That says nothing of the event: it is kept and written
// after the restart, not given up after five attempts.
func TestLimitsChangedFromTiersLosesNoAuditEvent(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	pub := auditPublisher(t, env, sys)
	publishUsers(pub, 0, 5)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// Flat limits where init gave tiers.
	time.Sleep(time.Second) // a newer iat than init's
	env.PushServiceAccount(t, func(c *jwt.AccountClaims) {
		c.Limits.JetStreamTieredLimits = nil
		c.Limits.JetStreamLimits = jwt.JetStreamLimits{DiskStorage: 1 << 30, MemoryStorage: 64 << 20, Streams: -1, Consumer: -1}
	})
	publishUsers(pub, 5, 6)
	time.Sleep(4 * time.Second) // past five attempts
	if err := pub.Flush(100 * time.Millisecond); err == nil && pub.Lost() == 0 {
		t.Log("the event was stored before the restart: the server moved the stream to the new limits")
	}
	env.Restart(t)
	if err := pub.Flush(20 * time.Second); err != nil {
		t.Fatalf("Flush after the restart: %v", err)
	}
	if n := pub.Lost(); n != 0 {
		t.Errorf("%d audit events given up while the stream had no limit for its tier", n)
	}
	storedOnceInOrder(t, svc, 6)
}

// TestAuditStreamRefusedForWantOfItsTier: the service account's tiers
// lack the audit stream's replica count (an R1 tier taken out, or a
// kv_replicas of 5 with no tier added). The server refuses the
// stream (10120) and WithAudit failed with the server's words alone,
// naming neither the tier nor how to add it, as kvstore does for the
// bucket.
func TestAuditStreamRefusedForWantOfItsTier(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	env.PushServiceAccount(t, func(c *jwt.AccountClaims) {
		delete(c.Limits.JetStreamTieredLimits, "R1")
	})
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pub.WithAudit(ctx, auditConn(t, env), 1)
	if err == nil {
		t.Fatal("WithAudit made the audit stream with no limits for its tier")
	}
	for _, want := range []string{"R1", "--js-tier 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("WithAudit: %q does not say %q", err, want)
		}
	}
}

package events_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestAFullAccountLosesNoAuditEvent: the audit stream shares the service
// account's JetStream storage with the bucket. While the account has no
// room (its disk_storage reached: the stream answers 10002), an event is
// not refused for what it is: it is kept and written once an operator
// made room, as the store keeps its user records, and as a server out of
// storage (10047, 10023) is waited out. Counted as the event's refusal,
// it was given up after five attempts, two seconds.
func TestAFullAccountLosesNoAuditEvent(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	pub := events.New(sys, "prov", slog.New(slog.DiscardHandler))
	if err := pub.WithAudit(context.Background(), auditConn(t, env), 1); err != nil {
		t.Fatal(err)
	}
	publishUsers(pub, 0, 5)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The service account's JWT, with the disk storage given.
	raw, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.ServiceAccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	push := func(disk int64) {
		t.Helper()
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		// In every tier init gave the account (one per replica count).
		for tier, l := range c.Limits.JetStreamTieredLimits {
			l.DiskStorage = disk
			c.Limits.JetStreamTieredLimits[tier] = l
		}
		c.IssuedAt = 0
		tok, err := c.Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		m, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(tok), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m.Data), `"code":200`) {
			t.Fatalf("claims update: %s", m.Data)
		}
	}
	push(1) // no room at all
	publishUsers(pub, 5, 6)
	time.Sleep(4 * time.Second) // past five attempts
	time.Sleep(time.Second)     // a newer iat
	push(bootstrap.ServiceAccountDiskStorage)
	if err := pub.Flush(15 * time.Second); err != nil {
		t.Fatalf("Flush once the account has room again: %v", err)
	}
	if n := pub.Lost(); n != 0 {
		t.Errorf("%d audit events given up while the account had no room", n)
	}
	storedOnceInOrder(t, svc, 6)
}

package events_test

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
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
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	svc := env.ServiceUser(t)
	pub := auditPublisher(t, env, sys)
	publishUsers(pub, 0, 5)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	// The service account's JWT, with the disk storage given in every
	// tier init gave it (one per replica count).
	push := func(disk int64) {
		t.Helper()
		env.PushServiceAccount(t, func(c *jwt.AccountClaims) {
			for tier, l := range c.Limits.JetStreamTieredLimits {
				l.DiskStorage = disk
				c.Limits.JetStreamTieredLimits[tier] = l
			}
		})
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

package events_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/provtest"
)

// TestAuditStreamDeletedWhileRunning: an operator deletes the audit stream
// while the service runs. The writer makes it again and stores the events
// published after, instead of trying them forever against a stream that
// is gone (every write answered "no responders", taken for a stream
// without a leader), the queue filling and every event after it dropped.
func TestAuditStreamDeletedWhileRunning(t *testing.T) {
	env, svc, pub, logs := auditSetupLogged(t)
	ctx := context.Background()
	publishUsers(pub, 0, 10)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(operatorConn(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	publishUsers(pub, 10, 20)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatalf("Flush after the audit stream was deleted: %v", err)
	}
	seen, got := stored(t, svc)
	if len(got) != 10 || seen["10"] != 1 || seen["19"] != 1 || pub.Lost() != 0 || logs.lost() != 0 {
		t.Fatalf("stored %v after the stream was deleted, %d lost; want 10 to 19", got, pub.Lost())
	}
}

// operatorConn connects as a user of the service's account without
// permissions (as an operator would, with the account's signing key from
// the offline directory): it may delete the audit stream, which the
// service user may not.
func operatorConn(t *testing.T, env *provtest.Env) *nats.Conn {
	t.Helper()
	return env.Connect(t, env.ServiceAccountCreds(t, "operator", jwt.Permissions{}))
}

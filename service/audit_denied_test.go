package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestStartRefusesServiceCredsWithoutTheAuditStream: service creds that
// may use the KV bucket but not the audit stream (those of an `init` from
// before the audit stream) stop the start, naming what the server refused.
// The audit stream is created on a connection of its own, and the denial
// was looked for on the store's connection, which had none: the start
// took the refusal for JetStream not being up yet and retried forever.
func TestStartRefusesServiceCredsWithoutTheAuditStream(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	perms := bootstrap.ServicePermissions(env.Config.KVBucket, env.Config.SubjectPrefix)
	var allow jwt.StringList
	for _, s := range perms.Pub.Allow {
		if !strings.Contains(s, api.AuditStream) && !strings.Contains(s, ".audit.") {
			allow = append(allow, s)
		}
	}
	perms.Pub.Allow = allow
	env.Config.ServiceCreds = env.ServiceAccountCreds(t, "service", perms)

	// No deadline, as serve's: each JetStream call waits its default
	// timeout (5 s).
	start := time.Now()
	err := startRefused(t, env.Config)
	if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), api.AuditStream) {
		t.Fatalf("after %s: %v; want the refused audit stream subject named", time.Since(start).Round(time.Millisecond), err)
	}
}

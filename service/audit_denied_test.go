package service_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestStartRefusesServiceCredsWithoutTheAuditStream: service creds that
// may use the KV bucket but not the audit stream (those of an `init` from
// before the audit stream) stop the start, naming what the server refused.
// The audit stream is created on a connection of its own, and the denial
// was looked for on the store's connection, which had none: the start
// took the refusal for JetStream not being up yet and retried forever.
func TestStartRefusesServiceCredsWithoutTheAuditStream(t *testing.T) {
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
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		svc *service.Service
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		svc, err := service.Start(ctx, env.Config, slog.New(slog.DiscardHandler))
		done <- result{svc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		cancel()
		r = <-done
		t.Fatalf("the start still waited after 15s (%v), want it refused, naming the refused audit stream subject", r.err)
	}
	if r.err == nil {
		r.svc.Stop()
		t.Fatal("started with service creds that may not create the audit stream")
	}
	if !strings.Contains(r.err.Error(), "Permissions Violation") || !strings.Contains(r.err.Error(), api.AuditStream) {
		t.Fatalf("after %s: %v; want the refused audit stream subject named", time.Since(start).Round(time.Millisecond), r.err)
	}
}

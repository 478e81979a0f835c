package service_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestAuditOfADeletedAuditStream: an operator deletes the audit stream
// while the service runs, and no change has made it again since.
// prov.audit answered 503 (unavailable: try again) for ever; it now says
// the stream is gone (404), naming it.
func TestAuditOfADeletedAuditStream(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	svc, err := service.Start(context.Background(), env.Config, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	ctx := context.Background()
	if _, err := svc.Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		r, err := svc.Provision.Audit(ctx, api.AuditRequest{Account: "acme"})
		if err == nil && len(r.Events) > 0 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the account's audit record never stored: %v, %v", r, err)
		}
	}
	// As an operator would, with a user of the service's account.
	op := env.Connect(t, env.ServiceAccountCreds(t, "operator", jwt.Permissions{}))
	js, err := jetstream.New(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, api.AuditStream); err != nil {
		t.Fatal(err)
	}
	_, err = svc.Provision.Audit(ctx, api.AuditRequest{Account: "acme"})
	if !errors.Is(err, provision.ErrNotFound) || errors.Is(err, provision.ErrUnavailable) || !strings.Contains(err.Error(), api.AuditStream) {
		t.Fatalf("Audit with the audit stream deleted: %v; want not found, naming %s", err, api.AuditStream)
	}
}

package service_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestRunEndsWhenAConnectionIsClosedForGood: nats.go gives a connection up
// (closes it) when the server refuses its creds twice in a row: here the
// provisioner user's JWT expired, as a revoked or expired user would be.
// Nothing reconnects it any more, yet Run went on "serving" deaf for ever:
// the process never exited, so systemd or Kubernetes never restarted it,
// and the health endpoint called it an outage that passes by itself. Run
// must stop the service and return an error naming the connection.
func TestRunEndsWhenAConnectionIsClosedForGood(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	path := provtest.SystemUserCreds(t, env.Dir, env.Init.SystemAccount, "provisioner-expiring", func(uc *jwt.UserClaims) {
		uc.Expires = time.Now().Add(4 * time.Second).Unix()
	})
	env.Config.NATSCreds = path

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, env.Config, provtest.Logger(t)) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its connection was closed for good, want an error (a non-zero exit, for a restart)")
		}
		if !strings.Contains(err.Error(), "provisioner") || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Run: %v, want the closed connection named", err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatal("Run still serving 16 s after its creds expired and nats.go closed the connection for good")
	}
}

// TestRunFailsAStartRefusedAsItIsStopped: a start that fails for a real
// reason (here creds that are not there) as the stop signal arrives is
// still a failure; only the wait for NATS that the stop cuts short is a
// clean exit. Run took any failed start with its context ended for a
// clean stop: serve exited 0 and the error was logged at INFO only.
func TestRunFailsAStartRefusedAsItIsStopped(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := *env.Config
	cfg.NATSCreds = filepath.Join(t.TempDir(), "missing.creds")
	if err := service.Run(ctx, &cfg, provtest.Logger(t)); err == nil || !strings.Contains(err.Error(), "nats_creds") {
		t.Errorf("Run with missing nats_creds, stopped as it started: %v, want the missing creds named", err)
	}

	// Stopped while it waits for a server that is not there: clean.
	cfg = *env.Config
	cfg.NATSURL = "nats://127.0.0.1:" + strconv.Itoa(provtest.FreePort(t))
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := service.Run(ctx, &cfg, provtest.Logger(t)); err != nil {
		t.Errorf("Run stopped while it waited for NATS: %v, want a clean stop", err)
	}
}

// TestStartEndsWhenAConnectionIsClosedForGood: a connection nats.go closes
// for good while the start still waits for JetStream (the bucket, the
// audit stream: the server refused its creds twice, here the service
// user's JWT expired) never comes back, yet the wait took its
// "connection closed" for JetStream not up yet and retried for ever: the
// process neither served nor exited, so no supervisor restarted it. The
// wait must fail at once, naming the connection.
func TestStartEndsWhenAConnectionIsClosedForGood(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	creds := provtest.UserCreds(t, filepath.Join(env.Dir, bootstrap.ServiceAccountSigningFile), env.Init.ServiceAccount, "service-expiring", func(uc *jwt.UserClaims) {
		uc.Expires = time.Now().Add(2 * time.Second).Unix()
	})
	nc := env.Connect(t, creds)
	for deadline := time.Now().Add(15 * time.Second); !nc.IsClosed(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nats.go did not close the connection of the expired creds for good")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	began := time.Now()
	err := service.WaitJetStreamOn(ctx, nc, "provisioner-store", creds, func() error {
		_, err := nc.Request("$JS.API.INFO", nil, time.Second)
		return fmt.Errorf("%w: %w", provision.ErrUnavailable, err)
	})
	if err == nil || !strings.Contains(err.Error(), "closed for good") {
		t.Errorf("the wait for JetStream on a connection closed for good: %v, want it named", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the wait for JetStream on a connection closed for good took %s", took.Round(time.Millisecond))
	}
}

package service_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
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
	env := provtest.Deployment(t, bootstrap.Options{})
	data, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.SystemAccountSigningFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "provisioner-expiring"
	uc.IssuerAccount = env.Init.SystemAccount
	uc.Expires = time.Now().Add(4 * time.Second).Unix()
	token, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, _ := jwt.FormatUserConfig(token, seed)
	path := filepath.Join(t.TempDir(), "expiring.creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
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

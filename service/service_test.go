package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestCreateWhileServerDownLeavesNothing: a create while the server is away
// fails at once, and when the server is back no account turns up there or
// in the store.
func TestCreateWhileServerDownLeavesNothing(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	env.Server.Stop()
	_, err := svc.Provision.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"})
	if !errors.Is(err, provision.ErrNotSent) && !errors.Is(err, provision.ErrTimeout) {
		t.Fatalf("create while the server is down: %v, want a resolver timeout", err)
	}
	if _, err := svc.Store.AccountByName(context.Background(), "acme"); err == nil {
		t.Fatalf("the failed create left its keys in the store")
	}
	env.Restart(t)
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	// Give a buffered push, if any, the time to arrive.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		m, err := sys.Request(resolver.SubjectClaimsList, nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Data []string `json:"data"`
		}
		if err := jsonUnmarshal(m.Data, &list); err != nil {
			t.Fatal(err)
		}
		// The system account and the service's own account are preloaded.
		if len(list.Data) != 2 || !slices.Contains(list.Data, env.Init.SystemAccount) || !slices.Contains(list.Data, env.Init.ServiceAccount) {
			t.Fatalf("after a failed create the resolver holds %v; want only the system and service accounts", list.Data)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStopWhileDisconnected: SIGTERM while the server is away is a clean
// stop.
func TestStopWhileDisconnected(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	env.Server.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for svc.NC.Status() == nats.CONNECTED && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := svc.Stop(); err != nil {
		t.Errorf("stop while disconnected: %v, want a clean stop", err)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

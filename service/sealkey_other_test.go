package service_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestOtherSealKeyIsAProblem: two instances on one new bucket given
// different seal_key files (a mis-distributed seal.xk) both start, and
// each seals the accounts it creates with a key the other cannot open.
// The other instance answered a request for such an account with a 500
// "internal error", and its health and prov.status said nothing: the
// mistake showed at its next restart, which refuses the bucket. Now its
// readiness fails, prov.status names the foreign key, and the request's
// answer says why and what to do.
func TestOtherSealKeyIsAProblem(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ctx := context.Background()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	otherKey := filepath.Join(env.Dir, "seal-other.xk")
	if err := os.WriteFile(otherKey, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	var svcs []*service.Service
	for i, name := range []string{"inst-a", "inst-b"} {
		cfg := *env.Config
		cfg.Instance = name
		if i == 1 {
			cfg.SealKey = otherKey
			cfg.HealthListen = addr
		}
		svc, err := service.Start(ctx, &cfg, provtest.Logger(t))
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { svc.Stop() })
		svcs = append(svcs, svc)
	}
	waitHealth(t, addr, http.StatusOK, api.HealthOK)
	created, err := svcs[0].Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}

	h := waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthUnavailable)
	if len(h.Problems) != 1 || !strings.Contains(h.Problems[0], "seal key") {
		t.Errorf("problems %q, want the seal key reported", h.Problems)
	}
	// Only inst-b answers from here on.
	svcs[0].Stop()
	admin := env.Admin(t)
	prefix := env.Config.SubjectPrefix
	st := provtest.Request(t, admin, prefix+".status.inst-b", `{}`)
	if p, _ := st.Body["problem"].(string); !strings.Contains(p, "seal key") || !strings.Contains(p, "X") || strings.Contains(p, string(seed)) {
		t.Errorf("prov.status problem %q, want the foreign seal key named (its public key only)", p)
	}
	got := provtest.Request(t, admin, prefix+".account.get", fmt.Sprintf(`{"account":%q}`, created.Account.PublicKey))
	if got.Code != api.CodeUnavailable || !strings.Contains(got.Description, "sealed with a seal key this instance does not hold") || !strings.Contains(got.Description, "same seal_key") {
		t.Errorf("account.get on inst-b: %d %q, want 503 saying the account is sealed with another key and what to do", got.Code, got.Description)
	}
}

// TestFileStoreNewSealKeySaysSealKeyPrevious: a file deployment started
// with a new seal_key and without seal_key_previous failed with the bare
// "wrong or missing seal key: account A... in DIR: seal: sealed with
// another key X...", which does not say how to give the old key (the KV
// store's refusal does). It now names seal_key_previous.
func TestFileStoreNewSealKeySaysSealKeyPrevious(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	if r := provtest.Request(t, env.Admin(t), "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatal(r.Description)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	newKey := filepath.Join(env.Dir, "seal-2.xk")
	if err := os.WriteFile(newKey, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := *env.Config
	cfg.SealKey, cfg.SealKeyPrevious = newKey, nil
	s, err := service.Start(context.Background(), &cfg, provtest.Logger(t))
	if err == nil {
		s.Stop()
		t.Fatal("a start with a seal key that did not seal the store succeeded")
	}
	if !strings.Contains(err.Error(), "seal_key_previous") {
		t.Fatalf("start with a new seal_key: %v, want it to say the old key goes in seal_key_previous", err)
	}
}

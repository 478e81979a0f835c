package service_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestHealthNamesNoUntrustedKey: an instance whose operator signing key
// the servers do not trust (its operator JWT lists a key the running
// servers were not given yet) is unavailable, and the endpoint, which
// answers anyone who reaches it, says so without the key (README: it
// says nothing of keys or accounts); prov.status and the log name it.
func TestHealthNamesNoUntrustedKey(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	raw, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.OperatorIdentityKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	id, err := jwt.ParseDecoratedNKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	opPath := filepath.Join(env.Dir, bootstrap.OperatorJWTFile)
	raw, err = os.ReadFile(opPath)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	keyPath := filepath.Join(env.Dir, "operator-signing-new.nk")
	if err := os.WriteFile(keyPath, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	// add-signing-key on the instance's copy only: the running server
	// keeps the operator JWT it loaded.
	oc.SigningKeys.Add(pub)
	signed, err := oc.Encode(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opPath, []byte(signed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	env.Config.HealthListen = addr
	env.Config.OperatorSigningKey = keyPath
	env.Start(t)

	h := waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthUnavailable)
	if len(h.Problems) != 1 || !strings.Contains(h.Problems[0], "trust") {
		t.Fatalf("problems %q, want the untrusted signing key reported", h.Problems)
	}
	if strings.Contains(h.Problems[0], pub) {
		t.Errorf("the unauthenticated endpoint names the operator signing key: %q", h.Problems[0])
	}
}

package service_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

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
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// add-signing-key on the instance's copy only: the running server
	// keeps the operator JWT it loaded.
	pub, keyPath := provtest.NewOperatorKeyFile(t, env.Dir, "operator-signing-new.nk")
	provtest.EditOperatorJWT(t, env.Dir, func(oc *jwt.OperatorClaims) { oc.SigningKeys.Add(pub) })
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

package service_test

import (
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestStartNamesAnUnfinishedRotation: an instance whose config `operator
// finish` was not run on (step 4: "do the same config change on every
// instance") still names the old key as operator_signing_key and the new
// one as operator_signing_key_next. Once the operator JWT lists only the
// new key, its start is refused; the refusal must name what to do (finish
// on this config), not tell the operator to generate yet another key.
func TestStartNamesAnUnfinishedRotation(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	// add-signing-key, then remove-signing-key of the old one.
	pub, keyPath := provtest.NewOperatorKeyFile(t, env.Dir, "operator-signing-next.nk")
	provtest.EditOperatorJWT(t, env.Dir, func(oc *jwt.OperatorClaims) { oc.SigningKeys = jwt.StringList{pub} })
	cfg := *env.Config
	cfg.OperatorSigningKeyNext = keyPath
	err := startRefused(t, &cfg)
	if !strings.Contains(err.Error(), "operator finish") || strings.Contains(err.Error(), "--sk generate") {
		t.Errorf("start: %q, want it to name operator finish (the rotation was not finished on this config), not a new key", err)
	}
}

package service_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

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
	keyPath := filepath.Join(env.Dir, "operator-signing-next.nk")
	if err := os.WriteFile(keyPath, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	// add-signing-key, then remove-signing-key of the old one.
	oc.SigningKeys = jwt.StringList{pub}
	signed, err := oc.Encode(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opPath, []byte(signed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := *env.Config
	cfg.OperatorSigningKeyNext = keyPath
	err = startRefused(t, &cfg)
	if !strings.Contains(err.Error(), "operator finish") || strings.Contains(err.Error(), "--sk generate") {
		t.Errorf("start: %q, want it to name operator finish (the rotation was not finished on this config), not a new key", err)
	}
}

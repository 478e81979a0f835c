package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestAddSigningKeyTwiceRefused runs add-signing-key a second time, as
// after a crash it reported or by mistake: it must refuse, naming the
// keys and how to go on, and change nothing: no third key trusted, no
// extra seed file, and operator.jwt.prev still the JWT from before the
// rotation (README: "the old one kept as .prev").
func TestAddSigningKeyTwiceRefused(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	identity := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
	original, err := os.ReadFile(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT); err != nil {
		t.Fatal(err)
	}
	rotated, _ := os.ReadFile(opJWT)
	_, _, err = runCmd(t, "operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT)
	if err == nil || !strings.Contains(err.Error(), "rotation") || !strings.Contains(err.Error(), res.OperatorSigning) {
		t.Errorf("a second add-signing-key: %v, want a refusal naming the rotation under way and its keys", err)
	}
	if keys, _ := filepath.Glob(filepath.Join(res.Dir, "operator-signing-*.nk")); len(keys) != 1 {
		t.Errorf("after a second add-signing-key there are %d new signing key files, want 1: %v", len(keys), keys)
	}
	if now, _ := os.ReadFile(opJWT); !bytes.Equal(now, rotated) {
		t.Error("a second add-signing-key changed operator.jwt")
	}
	if prev, _ := os.ReadFile(opJWT + ".prev"); !bytes.Equal(prev, original) {
		t.Error("a second add-signing-key overwrote operator.jwt.prev: the JWT from before the rotation is lost")
	}
}

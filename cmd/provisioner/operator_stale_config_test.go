package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestRefusalsNameTheMissingNextKey: of two instances, the operator gave
// only one operator_signing_key_next, rotated through it and ran finish
// on its config. The other's config still signs with the old key and
// names no next key. remove-signing-key of the old key, given that
// config, is refused, as it must be, but said to "finish the rotation",
// and finish on that config said "nothing to finish": each refusal sent
// the operator to the other, and neither named what to do (give that
// instance the new key as operator_signing_key_next).
func TestRefusalsNameTheMissingNextKey(t *testing.T) {
	t.Parallel()
	res, opJWT, identity, oldKey, nextKey := rotationStart(t, bootstrap.StoreFile)
	next, err := provision.LoadOperator(opJWT, nextKey)
	if err != nil {
		t.Fatal(err)
	}
	next.Signer.Wipe()
	// The other instance's config: init's, with absolute paths.
	raw, err := os.ReadFile(res.Config)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"operator_jwt", "operator_signing_key", "nats_creds", "store_dir", "service_creds", "seal_key"} {
		if v, ok := fields[f].(string); ok && v != "" && !filepath.IsAbs(v) {
			fields[f] = filepath.Join(res.Dir, v)
		}
	}
	other := filepath.Join(t.TempDir(), "config.json")
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(other, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	_, _, err = runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey, "--config", other)
	if err == nil || !strings.Contains(err.Error(), "operator_signing_key_next") || !strings.Contains(err.Error(), next.SignerKey) {
		t.Errorf("remove-signing-key of the key a config without a next key signs with: %v; want it refused, naming operator_signing_key_next and the new key %s", err, next.SignerKey)
	}
	_, _, err = runCmd(t, "operator", "finish", "--config", other)
	if err == nil || !strings.Contains(err.Error(), "set operator_signing_key_next") || !strings.Contains(err.Error(), next.SignerKey) {
		t.Errorf("finish on a config that signs with the old key and has no next key: %v; want it to say to set operator_signing_key_next to %s", err, next.SignerKey)
	}
}

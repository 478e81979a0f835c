package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestRemoveSigningKeyKeepsTheConfigsKeys: step 5 of the rotation takes a
// key out of the operator JWT, offline. A slip of --key (the new key, or
// the old one before finish made the new one the config's) left the
// servers, once they ran that JWT, trusting no key the service signs
// with: every account it signed stopped working. A key the provisioner's
// config (beside the operator JWT, as init writes it, or --config) signs
// with, or will (operator_signing_key_next), is refused; the old key,
// once the config names only the new one, is removed.
func TestRemoveSigningKeyKeepsTheConfigsKeys(t *testing.T) {
	t.Parallel()
	res, opJWT, identity, oldKey, nextKey := rotationStart(t, bootstrap.StoreFile)
	next, err := provision.LoadOperator(opJWT, nextKey)
	if err != nil {
		t.Fatal(err)
	}
	next.Signer.Wipe()
	newKey := next.SignerKey
	setKeys := func(cur, nxt string) { t.Helper(); setConfigKeys(t, res.Config, cur, nxt) }
	refused := func(key string, args ...string) {
		t.Helper()
		before, _ := os.ReadFile(opJWT)
		_, _, err := runCmd(t, append([]string{"operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", key}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "signs with") {
			t.Errorf("removing %s %v: %v; want it refused, the config signs with it", key, args, err)
		}
		if after, _ := os.ReadFile(opJWT); !bytes.Equal(before, after) {
			t.Fatalf("removing %s %v changed the operator JWT", key, args)
		}
	}
	// Step 3: the config signs with the old key and names the new one.
	setKeys(bootstrap.OperatorSigningKeyFile, filepath.Base(nextKey))
	refused(newKey)
	refused(oldKey)
	// A config elsewhere, named by --config.
	elsewhere := filepath.Join(t.TempDir(), "config.json")
	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	for _, f := range []string{"operator_jwt", "operator_signing_key", "operator_signing_key_next", "nats_creds", "store_dir", "service_creds", "seal_key"} {
		if v, ok := fields[f].(string); ok && v != "" && !filepath.IsAbs(v) {
			fields[f] = filepath.Join(res.Dir, v)
		}
	}
	raw, _ = json.MarshalIndent(fields, "", "  ")
	os.WriteFile(elsewhere, raw, 0o644)
	setKeys(filepath.Base(nextKey), "")
	refused(oldKey, "--config", elsewhere)
	// Step 4 done: the config signs with the new key only.
	refused(newKey)
	if _, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey); err != nil {
		t.Fatalf("removing the old key once the config no longer names it: %v", err)
	}
}

// setConfigKeys sets a config file's operator_signing_key to cur and its
// operator_signing_key_next to nxt ("": none).
func setConfigKeys(t *testing.T, file, cur, nxt string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	fields["operator_signing_key"] = cur
	delete(fields, "operator_signing_key_next")
	if nxt != "" {
		fields["operator_signing_key_next"] = nxt
	}
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

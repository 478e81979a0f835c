package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provision"
)

// TestAddSigningKeyNextLineLoads: step 1 of the rotation run as README
// gives it, from the directory above the deployment (--operator-jwt
// deploy/operator.jwt), prints the "operator_signing_key_next" value to
// set in the config; set in deploy/config.json as printed, it must name
// the new key. Config paths are relative to the config's directory, and
// the value printed was relative to the working directory
// ("deploy/operator-signing-X.nk"): the config named
// deploy/deploy/operator-signing-X.nk, which does not exist.
func TestAddSigningKeyNextLineLoads(t *testing.T) {
	top := t.TempDir()
	t.Chdir(top)
	if _, err := bootstrap.Init(bootstrap.Options{Dir: "deploy", Store: bootstrap.StoreFile}); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "operator", "add-signing-key", "--identity", filepath.Join("deploy", bootstrap.OperatorIdentityKeyFile), "--operator-jwt", filepath.Join("deploy", bootstrap.OperatorJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`"operator_signing_key_next": ("[^"]*")`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no operator_signing_key_next line in:\n%s", out)
	}
	var value string
	if err := json.Unmarshal([]byte(m[1]), &value); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(top, "deploy", "operator-signing-*.nk"))
	if len(keys) != 1 {
		t.Fatalf("add-signing-key wrote %v", keys)
	}
	want, err := seedFilePublicKey(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("deploy", bootstrap.ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	fields["operator_signing_key_next"] = value
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	next, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKeyNext)
	if err != nil {
		t.Fatalf("the config with the printed %q: %v", value, err)
	}
	next.Signer.Wipe()
	if next.SignerKey != want {
		t.Fatalf("the printed %q names key %s, want the new key %s", value, next.SignerKey, want)
	}
}

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestStoreMigrate copies a file store into a KV bucket: the accounts and
// users come over and the service on the bucket serves them; a second run
// changes nothing; an entry the bucket holds newer is left and reported.
func TestStoreMigrate(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	ok := func(op, body string) map[string]any {
		t.Helper()
		r := provtest.Request(t, admin, "prov."+op, body)
		if r.Code != 0 {
			t.Fatalf("%s: %d %q", op, r.Code, r.Description)
		}
		return r.Body
	}
	ok("account.create", `{"name":"acme","roles":{"device":{}}}`)
	ok("user.create", `{"account":"acme","name":"alice"}`)
	ok("account.create", `{"name":"gone"}`)
	ok("account.delete", `{"account":"gone"}`)
	before := ok("account.get", `{"account":"acme"}`)
	storeDir := env.Config.StoreDir
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}

	// The same deployment's config, on the KV store.
	raw, err := os.ReadFile(env.Init.Config)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	delete(fields, "store_dir")
	fields["nats_url"] = env.Server.URL()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	kvConfig := filepath.Join(env.Dir, "config.kv.json")
	os.WriteFile(kvConfig, raw, 0o644)

	out, _, err := runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 2 copied") || !strings.Contains(out, "users:    1 copied") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 0 copied, 0 replaced (older in the bucket), 2 already there") {
		t.Fatalf("a second migrate: %v\n%s", err, out)
	}

	env.Config.StoreDir = ""
	env.Start(t)
	after := ok("account.get", `{"account":"acme"}`)
	if after["account"].(map[string]any)["jwt"] != before["account"].(map[string]any)["jwt"] {
		t.Error("the account on the bucket is not the one the file store held")
	}
	users := ok("user.list", `{"account":"acme"}`)
	if n := len(users["users"].([]any)); n != 1 {
		t.Errorf("user.list on the bucket = %v", users)
	}
	if r := provtest.Request(t, admin, "prov.account.get", `{"account":"gone"}`); r.Code != 404 {
		t.Errorf("the deleted account is back: %d", r.Code)
	}
	// Newer in the bucket: left as it is, and said.
	ok("account.update", `{"account":"acme","limits":{"conn":3}}`)
	out, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err == nil || !strings.Contains(out, "left as it is") {
		t.Fatalf("migrate over a newer bucket entry: %v\n%s", err, out)
	}
}

package service_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestSeedFileForCredsNeverReachesTheServer: nats_creds pointed at a seed
// file (the operator signing key's, an easy mix-up among the config's
// files). nats.go sends a creds file's first block as the CONNECT's JWT,
// so the seed went to the server, which refused it and published it in
// the client's "jwt" of its auth error event ($SYS.SERVER.<id>.CLIENT.AUTH.ERR),
// for every system-account user that follows those events to read. The
// start must refuse the file, naming the field, before it connects.
func TestSeedFileForCredsNeverReachesTheServer(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{Store: bootstrap.StoreFile})
	authErrors := env.AuthErrors(t)
	raw, err := os.ReadFile(env.Config.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.TrimSpace(raw)
	decorated, err := jwt.DecorateSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	decoratedFile := filepath.Join(t.TempDir(), "signing.nk")
	if err := os.WriteFile(decoratedFile, decorated, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"operator signing key": env.Config.OperatorSigningKey,
		"decorated seed":       decoratedFile,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := *env.Config
			cfg.NATSCreds = path
			err := startRefused(t, &cfg)
			if strings.Contains(err.Error(), string(seed)) {
				t.Fatalf("the start's error shows the seed: %v", err)
			}
			if !strings.Contains(err.Error(), "nats_creds") {
				t.Errorf("the start was refused with %q, want it to name nats_creds", err)
			}
		})
	}
	for _, ev := range authErrors(2 * time.Second) {
		if bytes.Contains(ev, seed) {
			t.Fatalf("the server's auth error event carries the operator signing key's seed: %s", ev)
		}
	}
}

package service_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestCredsSwappedForASeedFileWhileRunning: the start checks that
// nats_creds is a creds file, but nats.go reads the file again at every
// reconnect and sends its first block as the CONNECT's JWT: a file
// replaced by a seed file while the service ran (a deployment tool
// putting the operator signing key in the wrong place) went to the server
// at the next reconnect, which published it in its auth error event
// ($SYS.SERVER.<id>.CLIENT.AUTH.ERR). Each connect checks the file first;
// put back, the service connects again.
func TestCredsSwappedForASeedFileWhileRunning(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{Store: bootstrap.StoreFile})
	good, err := os.ReadFile(env.Config.NATSCreds)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "provisioner.creds")
	if err := os.WriteFile(creds, good, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Config.NATSCreds = creds
	svc := env.Start(t)
	authErrors := env.AuthErrors(t)
	raw, err := os.ReadFile(env.Config.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	seed := bytes.TrimSpace(raw)
	if err := os.WriteFile(creds, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Restart(t)
	time.Sleep(3 * time.Second) // reconnect attempts, each 250 ms apart
	for _, ev := range authErrors(100 * time.Millisecond) {
		if bytes.Contains(ev, seed) {
			t.Fatalf("after the server's restart, its auth error event carries the seed that replaced the creds file: %.120s...", ev)
		}
	}
	if svc.NC.IsConnected() {
		t.Fatal("connected with a seed file for creds")
	}
	if err := os.WriteFile(creds, good, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !svc.NC.IsConnected() || !svc.PushNC.IsConnected(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the creds file put back, the service did not connect again within 10s")
		}
	}
}

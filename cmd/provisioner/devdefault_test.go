package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/provtest"
)

// TestDevDefaultsToJetStream: issue #8 has `dev` run the embedded server
// with JetStream and the KV store by default. The other dev tests all name
// a store; this one names none, and the service comes up on the bucket.
func TestDevDefaultsToJetStream(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	out := startDevRun(t, "--dir", dir, "--port", strconv.Itoa(provtest.FreePort(t)))
	if !strings.Contains(out, "store        jetstream\n") {
		t.Fatalf("dev without --store does not run the KV store; it says:\n%s", out)
	}
}

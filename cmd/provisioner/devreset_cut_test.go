package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestDevResetCutHalfWayCanBeResetAgain: dev --reset deletes the entries
// of its directory in name order, and ".dev.made", the mark that lets
// --reset delete, sorts first. A reset that stopped after it (kill -9, or
// an entry it could not remove) left dev's own deployment half deleted and
// unmarked: every later --reset refused it as "not made by provisioner
// dev", plain dev repeated init's "exists", and only an rm -rf by hand got
// out. The mark now goes last, with everything else gone.
func TestDevResetCutHalfWayCanBeResetAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	d, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	// A file the reset cannot remove (immutable, even to root) stops it
	// half way, as a kill would: after the mark, the identity keys and
	// config.json, before jetstream/.
	pin := filepath.Join(dir, bootstrap.JetStreamDir, "pin")
	if err := os.WriteFile(pin, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", pin).CombinedOutput(); err != nil {
		t.Skipf("cannot make a file immutable here: %v %s", err, out)
	}
	unpin := func() { exec.Command("chattr", "-i", pin).Run() }
	t.Cleanup(unpin)
	if _, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream, reset: true}, io.Discard); err == nil {
		t.Fatal("dev --reset removed an immutable file")
	}
	if _, err := os.Stat(filepath.Join(dir, bootstrap.ConfigFile)); err == nil {
		t.Fatalf("the cut reset did not get past %s; the test cuts it too late", bootstrap.ConfigFile)
	}
	unpin() // the cause is gone; the half-deleted directory stays

	d, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream, reset: true}, io.Discard)
	if err != nil {
		t.Fatalf("dev --reset of the directory a cut reset left: %v", err)
	}
	d.Stop()
}

package bench

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestServerProcessOutsideTheTerminalsGroup: a terminal's Ctrl-C goes to
// the foreground process group, the bench's. A separate server in it
// stopped at once, before the service that still writes to it; it must
// be in a group of its own, and stopped by Env.Stop, last.
func TestServerProcessOutsideTheTerminalsGroup(t *testing.T) {
	binary, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("no nats-server binary on PATH")
	}
	res, err := bootstrap.Init(bootstrap.Options{Dir: filepath.Join(t.TempDir(), "deploy"), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartServerProcess(context.Background(), binary, res.ServerConf, filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	pgid, err := syscall.Getpgid(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	if pgid == syscall.Getpgrp() {
		t.Fatalf("the separate server is in the bench's process group (%d): a Ctrl-C stops it before the service", pgid)
	}
}

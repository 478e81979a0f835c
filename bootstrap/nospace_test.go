//go:build linux

package bootstrap_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestInitFullDisk: init on a disk that fills up halfway (a small tmpfs,
// so a real ENOSPC) fails naming it and takes back every file it wrote,
// so that it can run again once there is room.
func TestInitFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			disk := t.TempDir()
			if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=24k"); err != nil {
				t.Skipf("cannot mount a tmpfs: %v", err)
			}
			t.Cleanup(func() { syscall.Unmount(disk, 0) })
			dir := filepath.Join(disk, "deploy")
			_, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: k.store})
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Init on a full disk: %v, want ENOSPC", err)
			}
			ents, _ := os.ReadDir(disk)
			if len(ents) != 0 {
				t.Fatalf("Init left %v", ents)
			}
			if err := syscall.Unmount(disk, 0); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("tmpfs", disk, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: k.store})
			if err != nil {
				t.Fatalf("Init with room: %v", err)
			}
			checkModes(t, res.Dir, k.files)
		})
	}
}

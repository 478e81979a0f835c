//go:build linux

package bootstrap_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/testenv"
)

// TestInitFullDisk: init on a disk that fills up halfway (a small tmpfs,
// so a real ENOSPC) fails naming it and takes back every file it wrote,
// so that it can run again once there is room.
func TestInitFullDisk(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			disk := testenv.SmallDisk(t, "24k")
			dir := filepath.Join(disk, "deploy")
			_, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: k.store})
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Init on a full disk: %v, want ENOSPC", err)
			}
			ents, _ := os.ReadDir(disk)
			if len(ents) != 0 {
				t.Fatalf("Init left %v", ents)
			}
			testenv.ResizeDisk(t, disk, "1m")
			res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: k.store})
			if err != nil {
				t.Fatalf("Init with room: %v", err)
			}
			checkModes(t, res.Dir, k.files)
		})
	}
}

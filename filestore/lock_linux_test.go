package filestore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/testenv"
)

// TestOwnerRunningOnAnOverlay: on an overlay whose layers are on two
// filesystems (as on btrfs, with its subvolumes), stat gives the lock file
// another device than the one /proc/locks names its lock by. The owner
// must still be found: missed, store check took a compaction met halfway
// for damage without looking again (exit 3), and neither it nor store
// migrate said that a service has the store open.
func TestOwnerRunningOnAnOverlay(t *testing.T) {
	upper := testenv.SmallDisk(t, "8m") // a filesystem of its own
	lower, merged := t.TempDir(), t.TempDir()
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(upper, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, filepath.Join(upper, "upper"), filepath.Join(upper, "work"))
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount an overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(merged, 0); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	dir := filepath.Join(merged, "store")
	s := open(t, dir, Options{})
	defer s.Close()
	if pid, ok := ownerRunning(dir); !ok || pid != os.Getpid() {
		t.Errorf("ownerRunning = %d, %v; want this process", pid, ok)
	}
	rep, err := Check(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.Contains(n, "has the store open") }) {
		t.Errorf("Check's notes %q do not say the store is open", rep.Notes)
	}
}

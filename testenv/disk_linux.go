//go:build linux

package testenv

import (
	"os"
	"syscall"
	"testing"
)

// SmallDisk mounts a tmpfs of size (as mount takes it: "64k", "1m") on a
// directory of the test's, for tests that fill a disk: a real ENOSPC, not
// a simulated one. It skips the test where mounting is not allowed (not
// root, or no CAP_SYS_ADMIN), and unmounts when the test ends.
func SmallDisk(tb testing.TB, size string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("mounting a tmpfs needs root")
	}
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		tb.Skipf("cannot mount a tmpfs: %v", err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// ResizeDisk gives a SmallDisk another size, keeping what it holds: room
// comes back, as when an operator frees some.
func ResizeDisk(tb testing.TB, dir, size string) {
	tb.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+size+",mode=0755"); err != nil {
		tb.Fatalf("resize the tmpfs at %s: %v", dir, err)
	}
}

//go:build !linux

package testenv

import "testing"

// SmallDisk skips the test: a small disk is a tmpfs, mounted on Linux only.
func SmallDisk(tb testing.TB, size string) string {
	tb.Helper()
	tb.Skip("a small disk (tmpfs) is mounted on Linux only")
	return ""
}

// ResizeDisk is never reached: SmallDisk skipped the test.
func ResizeDisk(tb testing.TB, dir, size string) {
	tb.Helper()
	tb.Fatal("ResizeDisk without a SmallDisk")
}

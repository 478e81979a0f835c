package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLockFileRemovedUnderAnOpenStore: a lock file removed while the store
// is open (an operator clearing what looks like a stale lock, a cleanup
// script) must not let a second Open in: two owners of one journal write
// over each other's records, and acknowledged changes are lost.
func TestLockFileRemovedUnderAnOpenStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer s.Close()
	if err := os.Remove(filepath.Join(dir, lockFile)); err != nil {
		t.Fatal(err)
	}
	second, err := Open(dir, Options{})
	if err == nil {
		second.Close()
		t.Fatal("a second Open succeeded while the store is open: its lock file was removed, and nothing else kept it out")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("the error does not name the process that has the store open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, lockFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused Open left a lock file of its own: %v", err)
	}
	if pid, ok := ownerRunning(dir); !ok || pid != os.Getpid() {
		t.Errorf("ownerRunning = %d, %v; want this process (store check and migrate tell a running owner by it)", pid, ok)
	}
}

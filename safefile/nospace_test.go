package safefile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/testenv"
)

// TestFullDisk: on a disk with no room (a small tmpfs, so a real ENOSPC)
// and a umask that takes nothing away, a write fails with ENOSPC, makes
// and changes nothing, and leaves no temp file; once there is room the
// same write succeeds with the mode asked for.
func TestFullDisk(t *testing.T) {
	dir := testenv.SmallDisk(t, "64k")
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })

	existing := filepath.Join(dir, "seal.xk")
	if err := WriteNew(existing, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 1<<20), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	big := bytes.Repeat([]byte("S"), 16<<10)
	fresh := filepath.Join(dir, "admin.creds")
	if err := WriteNew(fresh, big, 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("WriteNew on a full disk: %v, want ENOSPC", err)
	}
	if err := Replace(existing, big, 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Replace on a full disk: %v, want ENOSPC", err)
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "old" {
		t.Errorf("the replaced file holds %q (%v)", b, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files on the full disk: %v, want seal.xk and filler", entries)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(fresh, big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Replace(existing, big, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fresh, existing} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", p, fi.Mode(), err)
		}
	}
}

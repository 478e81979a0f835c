//go:build unix

package safefile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestReplaceKeepsOwner: an operator command run as root (sudo provisioner
// operator finish) rewrites files the service and nats-server read as
// their own users, 0600 (config.json, a server config with secrets).
// Replace's new file was root's: the service could no longer read its
// config at the next restart. The replaced file keeps its owner and group.
func TestReplaceKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to own a file as another user")
	}
	const uid, gid = 65534, 65533
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after Replace the file is %d:%d %v, want %d:%d 0600: its user can no longer read it", st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("after Replace the file holds %q", b)
	}
}

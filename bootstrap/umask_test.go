//go:build unix

package bootstrap_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSecretFileModesUmask000: a umask that takes nothing away does not
// widen a secret file or the offline directory.
func TestSecretFileModesUmask000(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store})
			if err != nil {
				t.Fatal(err)
			}
			checkModes(t, res.Dir, k.files)
		})
	}
}

// TestInitDirModeUmask077: the directory Init makes is 0755, as its public
// files are 0644 whatever the umask: under a umask of 077 it was 0700, so
// docker-compose.yml's provisioners, which run as another uid (65532) and
// were handed only their four secret files, could not read /deploy at all.
// A directory that existed keeps its mode.
func TestInitDirModeUmask077(t *testing.T) {
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "deploy")
	if _, err := bootstrap.Init(bootstrap.Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("the directory Init made: %v %v, want mode 0755", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(filepath.Join(dir, bootstrap.ContainerConfigFile)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%s: %v %v, want mode 0644", bootstrap.ContainerConfigFile, fi.Mode().Perm(), err)
	}

	existing := t.TempDir()
	if err := os.Chmod(existing, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.Init(bootstrap.Options{Dir: existing}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(existing); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("a directory that existed: %v %v, want its mode kept (0700)", fi.Mode().Perm(), err)
	}
}

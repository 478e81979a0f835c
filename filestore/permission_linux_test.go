//go:build linux

package filestore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOpenSaysWhoseFileItMayNotOpen: a store whose files a run as another
// user left (a serve run as root, then as the service's user), or made
// read-only, failed its start with a bare "open .../lock: permission
// denied". The error must name the file, whose it is, and what to do.
//
// It runs Open with another effective user ID, which is the whole
// process's: the test is not parallel, so no other test runs meanwhile.
func TestOpenSaysWhoseFileItMayNotOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making files of another user needs root")
	}
	const nobody = 65534
	base := t.TempDir()
	// The test's directories are 0700, root's: the other user must reach
	// the stores in them.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	giveAll := func(dir string) {
		filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			return nil
		})
	}
	tests := []struct {
		name    string
		prepare func(dir string) // the store is root's, made by an Open
		file    string           // the one the error must name
		want    string
		check   bool // Check, which only reads, fails too
	}{
		{"directory of root", func(string) {}, "", "belongs to uid 0 and this process runs as uid 65534", true},
		{"lock file of root", func(dir string) {
			if err := os.Chown(dir, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}, lockFile, "belongs to uid 0 and this process runs as uid 65534", true},
		{"snapshot of root", func(dir string) {
			giveAll(dir)
			if err := os.Chown(filepath.Join(dir, snapshotFile), 0, 0); err != nil {
				t.Fatal(err)
			}
		}, snapshotFile, "belongs to uid 0 and this process runs as uid 65534", true},
		{"read-only lock file", func(dir string) {
			giveAll(dir)
			if err := os.Chmod(filepath.Join(dir, lockFile), 0o400); err != nil {
				t.Fatal(err)
			}
		}, lockFile, "is mode -r--------: the user that runs the service needs to read and write", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tt.name, " ", "-"))
			closeStore(t, open(t, dir, Options{}))
			tt.prepare(dir)
			var openErr, checkErr error
			func() {
				if err := syscall.Setresuid(-1, nobody, -1); err != nil {
					t.Skipf("cannot take another effective user ID: %v", err)
				}
				defer func() {
					if err := syscall.Setresuid(-1, 0, -1); err != nil {
						panic(err)
					}
				}()
				var s *Store
				if s, openErr = Open(dir, Options{}); openErr == nil {
					s.Close()
				}
				_, checkErr = Check(dir, nil)
			}()
			errs := map[string]error{"Open": openErr}
			if tt.check {
				errs["Check"] = checkErr
			}
			path := filepath.Join(dir, tt.file)
			for what, err := range errs {
				if !errors.Is(err, fs.ErrPermission) {
					t.Errorf("%s: %v, want a permission error", what, err)
					continue
				}
				if want := path + " " + strings.Fields(tt.want)[0]; !strings.Contains(err.Error(), want) {
					t.Errorf("%s: %v\nwant it to name %s, with its owner or mode", what, err, path)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("%s: %v\nwant it to say %q", what, err, tt.want)
				}
			}
		})
	}
}

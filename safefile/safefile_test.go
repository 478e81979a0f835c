package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.nk")
	if err := WriteNew(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// An existing file is never overwritten.
	if err := WriteNew(path, []byte("two"), 0o644); !errors.Is(err, os.ErrExist) {
		t.Fatalf("WriteNew over an existing file: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "one" {
		t.Fatalf("the existing file now holds %q", b)
	}
	// A public file gets the mode asked for too.
	wide := filepath.Join(dir, "public.jwt")
	if err := WriteNew(wide, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(wide); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "operator.jwt")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Replace(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("after Replace the file holds %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("Replace left %d files, want 1: %v", len(entries), entries)
	}
	// A replace that fails (here: the rename, onto a directory) leaves
	// what was there, and no temp file.
	sub := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(filepath.Join(sub, "keep"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Replace(sub, []byte("newer"), 0o640); err == nil {
		t.Fatal("Replace onto a non-empty directory succeeded")
	}
	if fi, err := os.Stat(filepath.Join(sub, "keep")); err != nil || !fi.IsDir() {
		t.Fatalf("after a failed Replace the directory is gone: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Fatalf("a failed Replace left %d entries, want 2 (the file and the directory): %v", len(entries), entries)
	}
}

// TestWriteNewFailingLeavesNoFile: when the flush of the directory fails
// after the link, WriteNew returned the error and left path behind. A
// caller takes the error for a file not made: bootstrap.Init took back
// the files written before it, not that one, and init run again stopped
// at it with "exists".
func TestWriteNewFailingLeavesNoFile(t *testing.T) {
	errFlush := errors.New("directory flush failed")
	syncDir = func(string) error { return errFlush }
	t.Cleanup(func() { syncDir = flushDir })
	dir := t.TempDir()
	path := filepath.Join(dir, "key.nk")
	if err := WriteNew(path, []byte("one"), 0o600); !errors.Is(err, errFlush) {
		t.Fatalf("WriteNew: %v, want %v", err, errFlush)
	}
	if ents, _ := os.ReadDir(dir); len(ents) > 0 {
		t.Fatalf("a failed WriteNew left %s", ents[0].Name())
	}
	syncDir = flushDir
	if err := WriteNew(path, []byte("two"), 0o600); err != nil {
		t.Fatalf("WriteNew again after a failed one: %v", err)
	}
}

// TestReplaceThroughSymlink: a file that is a symlink (a server config or
// account JWT kept elsewhere by config management, a mounted secret) is
// rewritten where it points, in the target's directory, and the link
// stays. Replace renamed the new file over the link: the link became a
// plain file and the target the operator's tooling reads kept the old
// content. A dangling link is refused, naming it, and left as it was.
func TestReplaceThroughSymlink(t *testing.T) {
	dir, real := t.TempDir(), t.TempDir()
	target := filepath.Join(real, "nats-server.conf")
	if err := os.WriteFile(target, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "nats-server.conf")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := Replace(link, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("after Replace %s is no longer a symlink: %v, %v", link, fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("after Replace the symlink's target holds %q, want \"new\"", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("target mode %v, want 0640", fi.Mode().Perm())
	}
	for _, d := range []string{dir, real} {
		if entries, _ := os.ReadDir(d); len(entries) != 1 {
			t.Errorf("%s holds %v after Replace, want one entry", d, entries)
		}
	}

	dangling := filepath.Join(dir, "operator.jwt")
	if err := os.Symlink(filepath.Join(real, "gone.jwt"), dangling); err != nil {
		t.Fatal(err)
	}
	err := Replace(dangling, []byte("new"), 0o644)
	if err == nil || !strings.Contains(err.Error(), dangling) || !strings.Contains(err.Error(), "gone.jwt") {
		t.Fatalf("Replace through a dangling symlink: %v, want an error naming the link and its target", err)
	}
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("a refused Replace changed the dangling link: %v, %v", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(real, "gone.jwt")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused Replace made the link's target: %v", err)
	}
}

// TestErrorsNameThePath: a write that fails names the file asked for, not
// the temp file beside it that the operator never asked for and that is
// gone by then ("open deploy/.operator-signing-OABC.nk.tmp1234: no such
// file or directory" for add-signing-key --out into a missing directory;
// "link .key.nk.tmp99 key.nk: file exists"). The cause is kept.
func TestErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nowhere", "key.nk")
	existing := filepath.Join(dir, "key.nk")
	if err := WriteNew(existing, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(filepath.Join(sub, "keep"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		err        error
		want       error
	}{
		{"WriteNew into a missing directory", missing, WriteNew(missing, []byte("x"), 0o600), os.ErrNotExist},
		{"Replace into a missing directory", missing, Replace(missing, []byte("x"), 0o600), os.ErrNotExist},
		{"WriteNew over an existing file", existing, WriteNew(existing, []byte("x"), 0o600), os.ErrExist},
		{"Replace onto a directory", sub, Replace(sub, []byte("x"), 0o600), nil},
	} {
		if c.err == nil || (c.want != nil && !errors.Is(c.err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, c.err, c.want)
			continue
		}
		if msg := c.err.Error(); !strings.Contains(msg, c.path) || strings.Contains(msg, ".tmp") {
			t.Errorf("%s: %q names the temp file, not %s", c.name, msg, c.path)
		}
	}
}

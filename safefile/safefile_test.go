package safefile

import (
	"errors"
	"os"
	"path/filepath"
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

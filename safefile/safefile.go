// Package safefile writes the deployment's files (keys, creds, JWTs,
// configs) so that a crash never leaves one half written: a new file is
// created only if absent and flushed to disk before it counts; a replaced
// file is written beside the old one, flushed, renamed over it, and the
// rename flushed too.
package safefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"
)

// WriteNew creates path, which must not exist, with data and the mode perm
// whatever the umask, and flushes it to disk. The file is written and
// flushed beside path first, then linked to it, which fails when path
// exists: path never exists half written, not even after a crash. When it
// fails, path was not made; a crash can leave it, whole.
func WriteNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), TempPattern(path))
	if err != nil {
		return named("create", path, err)
	}
	tmp := f.Name()
	if err := fill(f, data, perm); err != nil {
		os.Remove(tmp)
		return named("write", path, err)
	}
	err = os.Link(tmp, path)
	os.Remove(tmp) // path, if linked, keeps the file
	if err != nil {
		return named("create", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		// The caller takes an error for a file not made, and will not
		// remove it: left, it stops a new try with "exists".
		os.Remove(path)
		return err
	}
	return nil
}

// TempPattern is the os.CreateTemp pattern of the temp file written
// beside path: ".NAME.tmp" and digits, with NAME cut to its first 100
// bytes (at a character's start). Whole, a name that fits the file system
// (255 bytes) made a temp name that did not, and the write failed with
// "file name too long" for a path that could be made.
func TempPattern(path string) string {
	name := filepath.Base(path)
	if len(name) > 100 {
		name = name[:100]
		for !utf8.ValidString(name) {
			name = name[:len(name)-1]
		}
	}
	return "." + name + ".tmp*"
}

// Replace writes data to path with the mode perm so that a crash leaves
// either the old file or the new one, whole: a temp file beside it,
// flushed, renamed over it. A path that is a symlink (config management's,
// a mounted secret's) has the file it points to replaced, beside that
// file, and stays a link: renamed over the link, the new file took its
// place and the target kept the old content. A link that points nowhere
// is refused, naming it.
func Replace(path string, data []byte, perm os.FileMode) error {
	name := path // what errors name
	path, err := resolveLink(path)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), TempPattern(path))
	if err != nil {
		return named("write", name, err)
	}
	defer os.Remove(f.Name()) // gone after the rename; left over on failure
	// Its owner's too: run as root (sudo operator finish), the new file
	// was root's, and the service or nats-server that reads the old one
	// as its own user (0600) could no longer read it.
	keepOwner(f, path)
	if err := fill(f, data, perm); err != nil {
		return named("write", name, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return named("replace", name, err)
	}
	return syncDir(filepath.Dir(path))
}

// resolveLink returns the file path names: path itself unless it is a
// symlink, else the file at the end of its links.
func resolveLink(path string) (string, error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return path, nil // a new file, or not a link: written at path
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		dest, _ := os.Readlink(path)
		return "", fmt.Errorf("%s is a symlink to %s, which does not resolve (%w): fix or remove the link", path, dest, err)
	}
	return real, nil
}

// named is err, from a step on the temp file beside path, as an error on
// path: the temp file is one the caller never asked for, and gone by the
// time the error is read. The cause (ENOSPC, EEXIST, ...) is kept.
func named(op, path string, err error) error {
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

// fill sets f's mode, writes data, flushes and closes f.
func fill(f *os.File, data []byte, perm os.FileMode) error {
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes a directory, so that a file made or renamed in it is
// still there after a power loss. Tests replace it to make the flush fail.
var syncDir = flushDir

func flushDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

package filestore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// The lock file is also the sign that a directory held a store, should its
// snapshot and journal be gone (see loader.vanished). Made by the first
// Open before it writes anything, it could not be that sign by being there
// alone: a first Open killed before its first snapshot left a directory
// the next Open refused, and the service did not start until someone
// emptied it by hand. So the lock file holds the owner's process ID on a
// line, and after it, while the Open that made it has not seen the
// directory hold state, the line of lockNewMark. Open takes the mark off,
// flushed, before it returns the store, and so before anything is
// acknowledged: a lock file without the mark shows a store, one with it
// shows only a first Open that did not finish.
const lockNewMark = "new store\n"

// lockState is what a lock file shows of the directory.
type lockState int

const (
	// lockAbsent: there is no lock file.
	lockAbsent lockState = iota
	// lockNew: the lock file is marked, or empty (made by an Open killed
	// before it wrote it): no Open that made it finished.
	lockNew
	// lockHeld: the lock file holds an ID alone: an Open finished, and the
	// directory held a store.
	lockHeld
)

// lockContent returns what the owner with process ID pid writes into the
// lock file: the ID, and the mark when the directory may not hold a store.
func lockContent(pid int, mark bool) []byte {
	b := []byte(strconv.Itoa(pid) + "\n")
	if mark {
		b = append(b, lockNewMark...)
	}
	return b
}

// parseLock returns what lock file content b shows. Anything but the mark
// after the first line counts as held: content of a held lock file, partly
// written over by a later owner's shorter ID, must not lose the sign.
func parseLock(b []byte) lockState {
	if len(b) == 0 {
		return lockNew
	}
	if _, rest, ok := bytes.Cut(b, []byte("\n")); ok && bytes.HasPrefix(rest, []byte(lockNewMark)) {
		return lockNew
	}
	return lockHeld
}

// readLock returns what the lock file of dir shows, without taking the
// lock.
func readLock(dir string) (lockState, error) {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return lockAbsent, nil
	}
	if err != nil {
		return 0, fmt.Errorf("filestore: %w", err)
	}
	return parseLock(b), nil
}

// claimLock takes the new-store mark off the lock file, once the directory
// holds state (see unmarkLock).
func (s *Store) claimLock() error {
	if !s.lockMarked {
		return nil
	}
	if err := unmarkLock(s.lock, s.dir); err != nil {
		return err
	}
	s.lockMarked = false
	return nil
}

// unmarkLock cuts the new-store mark off lock, the lock file of dir that
// this process wrote: from now on it is the sign that dir held a store. It
// is flushed, with the directory's entry for it, so that the sign lasts
// before the store acknowledges anything. One truncation takes the mark
// off: there is no moment the file shows neither.
func unmarkLock(lock *os.File, dir string) error {
	if err := lock.Truncate(int64(len(lockContent(os.Getpid(), false)))); err != nil {
		return fmt.Errorf("filestore: lock file: %w", err)
	}
	if err := syncFile(lock, false); err != nil {
		return fmt.Errorf("filestore: flush lock file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("filestore: flush store directory: %w", err)
	}
	return nil
}

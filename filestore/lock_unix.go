//go:build unix

package filestore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockOpenedHook runs in lockDir between opening the lock file and taking
// its lock, so that a test can let another Open act in that window.
var lockOpenedHook = func() {}

// lockDir takes the directory's lock: an exclusive flock on its lock file,
// not waiting, and writes this process's ID into it. The kernel drops the
// lock when the file is closed or the process dies, so a lock file left by
// a dead process blocks nothing. A second Open in this process fails too:
// flock locks belong to the open file, not the process.
//
// prev is what the lock file showed before: lockHeld keeps the file a sign
// of a store; otherwise the ID goes in with the new-store mark, taken off
// by claimLock once the directory holds state.
func lockDir(dir string) (f *os.File, prev lockState, err error) {
	path := filepath.Join(dir, lockFile)
	// An Open that fails removes the lock file it marked, holding its
	// lock: a file opened before that removal and locked after it is no
	// longer the directory's lock file, and locking it keeps no one out.
	// Such a lock is let go, and the lock file's name opened again.
	for {
		f, prev, err = lockFileAt(path)
		if err != nil {
			return nil, 0, err
		}
		if same, err := isLockFile(f, path); err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("filestore: lock %s: %w", path, err)
		} else if same {
			break
		}
		f.Close()
	}
	if prev != lockAbsent {
		b := make([]byte, 64)
		n, err := f.ReadAt(b, 0)
		if err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return nil, 0, fmt.Errorf("filestore: read lock file: %w", err)
		}
		prev = parseLock(b[:n])
	}
	// Written over, then cut to length: a truncation to zero would make
	// ext4 flush the file at close. Either way the first line is an ID,
	// and the mark is there only when it is meant to be: over a held lock
	// file goes an ID alone.
	content := lockContent(os.Getpid(), prev != lockHeld)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("filestore: lock file: %w", err)
	}
	if _, err := f.WriteAt(content, 0); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("filestore: lock file: %w", err)
	}
	if err := f.Truncate(int64(len(content))); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("filestore: lock file: %w", err)
	}
	return f, prev, nil
}

// lockDirInode takes an exclusive flock on the directory itself, not
// waiting, beside the lock file's (lockDir): a lock file removed while its
// owner runs (an operator clearing what looks like a stale lock) let the
// next Open make a new one and lock that, and two processes wrote one
// journal. The directory cannot be swapped under its open files so
// lightly. It is taken after the lock file's, so that what lockDir tells
// of the lock file is as before. It returns nil, and no error, where the
// directory cannot be flocked.
func lockDirInode(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("filestore: lock %s: %w", dir, err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			owner := "another process, though its lock file was removed"
			if pid, held, _ := flockHolder(dir); held {
				owner = fmt.Sprintf("process %d, though its lock file was removed", pid)
			}
			return nil, fmt.Errorf("%w: %s is locked by %s", ErrLocked, dir, owner)
		}
		// Where a directory cannot be flocked (NFS emulates flock with
		// byte-range locks, which need a file open for writing), the
		// lock file alone keeps a second owner out, as before.
		return nil, nil
	}
	return d, nil
}

// lockFileAt opens the lock file at path, making it when absent, and takes
// its flock without waiting. prev is lockAbsent when it made the file, and
// lockNew until the caller reads what the file holds.
func lockFileAt(path string) (f *os.File, prev lockState, err error) {
	// Made exclusively, so that "no lock file" is told from an empty one
	// without a look before the lock is taken.
	prev = lockAbsent
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR, 0o600)
		prev = lockNew // until its content is read
	}
	if err != nil {
		return nil, 0, fmt.Errorf("filestore: open lock file: %w", err)
	}
	lockOpenedHook()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, 0, fmt.Errorf("%w: %s is locked by %s", ErrLocked, filepath.Dir(path), lockOwner(filepath.Dir(path)))
		}
		return nil, 0, fmt.Errorf("filestore: lock %s: %w", path, err)
	}
	return f, prev, nil
}

// isLockFile reports whether f, locked, is still the file at path: not
// removed, nor replaced by a new lock file, since it was opened.
func isLockFile(f *os.File, path string) (bool, error) {
	var held, named unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &held); err != nil {
		return false, err
	}
	if err := unix.Stat(path, &named); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, err
	}
	return held.Dev == named.Dev && held.Ino == named.Ino, nil
}

// lockOwner describes who holds the lock, from the process ID its holder
// wrote.
func lockOwner(dir string) string {
	pid, ok := lockPID(dir)
	switch {
	case !ok:
		return "another process"
	case pid == os.Getpid():
		return fmt.Sprintf("this process (pid %d): the store is already open", pid)
	}
	return fmt.Sprintf("process %d", pid)
}

func lockPID(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return pid, err == nil && pid > 0
}

// ownerRunning reports the process that has the store open, if any, for a
// check that reads the store while it runs. It does not take the lock,
// not even for a moment: a check must not make an Open fail. On Linux it
// looks for the lock in /proc/locks; elsewhere it asks whether the process
// named in the lock file is alive.
func ownerRunning(dir string) (int, bool) {
	// The owner also locks the directory (lockDirInode), which tells it
	// when its lock file was removed.
	if pid, held, _ := flockHolder(dir); held {
		return pid, true
	}
	if pid, held, known := flockHolder(filepath.Join(dir, lockFile)); known {
		return pid, held
	}
	pid, ok := lockPID(dir)
	if !ok {
		return 0, false
	}
	err := unix.Kill(pid, 0)
	return pid, err == nil || errors.Is(err, unix.EPERM)
}

// flockHolder finds a flock on path in /proc/locks, whose lines read
// "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (pid, then device
// major:minor in hex and inode). known is false where there is no
// /proc/locks.
//
// The device there is the filesystem's, which is not always the one stat
// gives (a btrfs subvolume, an overlay whose layers are on two
// filesystems): a lock on the same inode number held by the process the
// lock file names counts too.
func flockHolder(path string) (pid int, held, known bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false, false
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		return 0, false, false
	}
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)), st.Ino)
	ino := fmt.Sprintf(":%d", st.Ino)
	named, _ := lockPID(filepath.Dir(path))
	for line := range strings.Lines(string(locks)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		pid, _ := strconv.Atoi(f[len(f)-4])
		if id := f[len(f)-3]; id == want || (strings.HasSuffix(id, ino) && pid > 0 && pid == named) {
			return pid, true, true
		}
	}
	return 0, false, true
}

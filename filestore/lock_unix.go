//go:build unix

package filestore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockDir takes the directory's lock: an exclusive flock on its lock file,
// not waiting, and writes this process's ID into it. The kernel drops the
// lock when the file is closed or the process dies, so a lock file left by
// a dead process blocks nothing. A second Open in this process fails too:
// flock locks belong to the open file, not the process.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("filestore: open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by %s", ErrLocked, dir, lockOwner(dir))
		}
		return nil, fmt.Errorf("filestore: lock %s: %w", path, err)
	}
	// Written over, then cut to length: a truncation to zero would make
	// ext4 flush the file at close.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: lock file: %w", err)
	}
	if _, err := f.WriteAt(pid, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: lock file: %w", err)
	}
	if err := f.Truncate(int64(len(pid))); err != nil {
		f.Close()
		return nil, fmt.Errorf("filestore: lock file: %w", err)
	}
	return f, nil
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
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 0
}

// ownerRunning reports the process that has the store open, if any, for a
// check that reads the store while it runs. It does not take the lock,
// not even for a moment: a check must not make an Open fail. On Linux it
// looks for the lock in /proc/locks; elsewhere it asks whether the process
// named in the lock file is alive.
func ownerRunning(dir string) (int, bool) {
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
	for line := range strings.Lines(string(locks)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] != "FLOCK" || f[len(f)-3] != want {
			continue
		}
		pid, _ := strconv.Atoi(f[len(f)-4])
		return pid, true, true
	}
	return 0, false, true
}

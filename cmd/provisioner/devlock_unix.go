//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// devLockFile is held by a running dev in its directory.
const devLockFile = ".dev.lock"

// lockDev takes the lock of a dev directory, so that a second dev on the
// same directory stops instead of starting a second server on the same
// JetStream and store files. The lock goes with the process, kill -9
// included; unlock releases it earlier.
func lockDev(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	path := filepath.Join(dir, devLockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("dev: another provisioner dev runs in %s; stop it, or use another --dir", dir)
		}
		return nil, fmt.Errorf("dev: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

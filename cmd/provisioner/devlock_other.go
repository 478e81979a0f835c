//go:build !unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// devLockFile is held by a running dev in its directory.
const devLockFile = ".dev.lock"

// lockDev only writes the lock file where flock is missing (it marks the
// directory as dev's, for --reset): two dev on one directory are not
// stopped there.
func lockDev(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, devLockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dev: %w", err)
	}
	return func() { f.Close() }, nil
}

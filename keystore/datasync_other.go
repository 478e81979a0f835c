//go:build !linux

package keystore

import "os"

// datasync flushes a file; elsewhere than Linux that is a full fsync.
func datasync(f *os.File) error { return f.Sync() }

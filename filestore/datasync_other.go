//go:build !linux

package filestore

import "os"

// datasync flushes a file; elsewhere than Linux that is a full fsync.
func datasync(f *os.File) error { return f.Sync() }

//go:build !linux

package filestore

// fileSizeLimit: the limit is not read here (see filesize_linux.go).
func fileSizeLimit() (uint64, bool) { return 0, false }

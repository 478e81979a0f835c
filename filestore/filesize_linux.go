package filestore

import "golang.org/x/sys/unix"

// fileSizeLimit returns the process's file size limit (RLIMIT_FSIZE, the
// soft one that fails writes) in bytes, for a message that says how large
// a file may grow; ok is false when there is none, or it cannot be read.
func fileSizeLimit() (limit uint64, ok bool) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &r); err != nil || r.Cur == unix.RLIM_INFINITY {
		return 0, false
	}
	return r.Cur, true
}

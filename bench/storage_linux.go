package bench

import "golang.org/x/sys/unix"

// volatileStorage names the memory-backed filesystem dir is on (tmpfs,
// ramfs), or returns "" when it is on anything else or cannot tell.
func volatileStorage(dir string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return ""
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	}
	return ""
}

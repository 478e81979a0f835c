//go:build unix

package safefile

import (
	"os"
	"syscall"
)

// keepOwner gives f, the new file for path, the owner and group of the
// file at path, when there is one and they differ. Best effort, as cp -p
// and sed -i do: a user who is not root cannot give a file away, and
// keeps the one he writes, which he can read.
func keepOwner(f *os.File, path string) {
	old, err := os.Stat(path)
	if err != nil {
		return
	}
	o, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	cur, err := f.Stat()
	if err != nil {
		return
	}
	if n, ok := cur.Sys().(*syscall.Stat_t); ok && n.Uid == o.Uid && n.Gid == o.Gid {
		return
	}
	f.Chown(int(o.Uid), int(o.Gid))
}

package filestore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// explainPermission adds to err, when it is a file of the store (or its
// directory) that this process may not read or write, whose that file is
// and what to do: a bare "open .../lock: permission denied" is what an
// instance started as another user than the one before it (a serve run
// as root, then as the service's user) met, without a word of why. It
// returns any other error, and nil, as it is.
func explainPermission(dir string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	path := dir
	var pe *fs.PathError
	if errors.As(err, &pe) {
		path = pe.Path
	}
	fi, serr := os.Stat(path)
	if serr != nil && path != dir {
		// A file in a directory this process may not search.
		path = dir
		fi, serr = os.Stat(path)
	}
	if serr != nil {
		return err
	}
	euid := os.Geteuid()
	if uid, ok := fileOwner(fi); ok && euid >= 0 && uid != euid {
		return fmt.Errorf("%w: %s belongs to uid %d and this process runs as uid %d (a run as another user, root?, left it): give the store directory and every file in it to the user that runs the service (chown -R), or run it as uid %d", err, path, uid, euid, uid)
	}
	return fmt.Errorf("%w: %s is mode %v: the user that runs the service needs to read and write the store directory (mode 0700) and every file in it (0600)", err, path, fi.Mode().Perm())
}

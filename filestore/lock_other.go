//go:build !unix

package filestore

import (
	"errors"
	"os"
)

// lockDir fails: the store needs flock to keep a second owner out.
func lockDir(string) (*os.File, lockState, error) {
	return nil, 0, errors.New("filestore: directory locks need a Unix system")
}

func lockDirInode(string) (*os.File, error) {
	return nil, errors.New("filestore: directory locks need a Unix system")
}

func ownerRunning(string) (int, bool) { return 0, false }

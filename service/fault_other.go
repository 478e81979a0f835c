//go:build !unix

package service

import "errors"

// fire: the test-only fault points stop the process with signals, which
// only unix systems have.
func fire(string) error {
	return errors.New("fault points need a unix system")
}

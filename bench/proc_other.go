//go:build !linux

package bench

import "syscall"

// sysProcAttr sets nothing: only Linux can tie the server's life to the
// bench's.
func sysProcAttr() *syscall.SysProcAttr { return nil }

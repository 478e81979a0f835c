package bench

import "syscall"

// sysProcAttr makes the kernel kill a separate server when the bench
// process dies, so that a killed bench leaves no nats-server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

package bench

import "syscall"

// sysProcAttr makes the kernel kill a separate server when the bench
// process dies, so that a killed bench leaves no nats-server behind. The
// server gets a process group of its own: in the terminal's group, a
// Ctrl-C stopped it at once, before the service that still writes to it,
// while Env.Stop stops the service first and the separate server last (a
// JetStream store's stop then waited about 5 s for a server gone).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

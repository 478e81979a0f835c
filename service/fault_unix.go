//go:build unix

package service

import (
	"os"
	"os/signal"
	"syscall"
)

// fire carries out a fault point's action: SIGKILL itself, or SIGSTOP
// itself and return once SIGCONT ends the stop.
func fire(action string) error {
	if action == "kill" {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // a signal to oneself lands a moment later: nothing may run on
	}
	// A stop sent to oneself also lands a moment later; the push must wait
	// for the SIGCONT that ends the stop.
	cont := make(chan os.Signal, 1)
	signal.Notify(cont, syscall.SIGCONT)
	defer signal.Stop(cont)
	if err := syscall.Kill(os.Getpid(), syscall.SIGSTOP); err != nil {
		return err
	}
	<-cont
	return nil
}

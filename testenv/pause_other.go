//go:build unix && !linux

package testenv

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// Pause stops a process with SIGSTOP. Without /proc to watch the stop
// take effect, it waits a moment for it (see pause_linux.go).
func Pause(tb testing.TB, p *os.Process) {
	tb.Helper()
	if err := PauseProcess(p); err != nil {
		tb.Fatal(err)
	}
}

// PauseProcess is Pause for a goroutine other than the test's.
func PauseProcess(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pause process %d: %w", p.Pid, err)
	}
	time.Sleep(20 * time.Millisecond)
	return nil
}

//go:build linux

package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Pause stops a process with SIGSTOP and returns once every one of its
// threads is stopped. kill(2) returns before the stop takes effect: a
// server whose threads were running on another core went on for a moment,
// and under load it committed a write a test had paused it to keep
// from committing (seen 1 run in 15 of a kvstore test). A test that
// pauses a process to hold something back must wait for the stop.
func Pause(tb testing.TB, p *os.Process) {
	tb.Helper()
	if err := PauseProcess(p); err != nil {
		tb.Fatal(err)
	}
}

// PauseProcess is Pause for a goroutine other than the test's: it returns
// what Pause fails the test with.
func PauseProcess(p *os.Process) error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pause process %d: %w", p.Pid, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !stopped(p.Pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop within 5s of SIGSTOP", p.Pid)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// stopped reports whether every thread of process pid is in the stopped
// state ("T" in /proc/<pid>/task/<tid>/stat).
func stopped(pid int) bool {
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || (s[i+2] != 'T' && s[i+2] != 't') {
			return false
		}
	}
	return true
}

package provtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/natsprov/provisioner/testenv"
)

// Tool finds an installed binary (nats-server, nats); see testenv.Tool.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	return testenv.Tool(tb, name)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	return testenv.FreePort(tb)
}

// SyncBuffer is a buffer that a process or goroutine may write while the
// test reads it.
type SyncBuffer = testenv.SyncBuffer

// RealServer replaces the deployment's embedded server with the
// nats-server binary on the same port and config, so that a test can pause
// it (SIGSTOP) as a stalled machine would be, and returns its process,
// once it takes connections. The cleanup resumes and kills it.
func (e *Env) RealServer(tb testing.TB) *os.Process {
	tb.Helper()
	e.Server.Stop()
	cmd := exec.Command(Tool(tb, "nats-server"), "-c", e.Init.ServerConf, "-p", fmt.Sprint(e.Port))
	out, err := os.Create(filepath.Join(tb.TempDir(), "nats-server.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", e.Port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return cmd.Process
		}
		if time.Now().After(deadline) {
			tb.Fatalf("nats-server not up: %v", err)
		}
	}
}

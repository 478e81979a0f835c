// Package testenv finds what tests need on the machine: the real tools
// (nats-server, nats) and free ports, and gives a buffer that a process
// may write while a test reads it. It imports nothing of the project, so
// that any package's tests, the stores' included, may use it.
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Tool finds an installed binary (nats-server, nats) on PATH or in
// $(go env GOPATH)/bin. A missing tool fails the test, or skips it with
// -short, saying how to install it.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, dir := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(dir, "bin", name)
			if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	msg := fmt.Sprintf("%s not found on PATH or in $(go env GOPATH)/bin; these tests need the real tools (scripts/test.sh installs them):\n"+
		"  go install github.com/nats-io/nats-server/v2@v2.15.2\n"+
		"  go install github.com/nats-io/natscli/nats@v0.5.0", name)
	if testing.Short() {
		tb.Skip(msg)
	}
	tb.Fatal(msg)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer that a process or goroutine may write while
// the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

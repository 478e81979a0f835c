// Package testenv finds what tests need on the machine: the real tools
// (nats-server, nats) and free ports, and gives a buffer that a process
// may write while a test reads it. It imports nothing of the project but
// freeport (which imports none), so that any package's tests, the stores'
// included, may use it.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/natsprov/provisioner/freeport"
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the kernel's ephemeral range (freeport.Pick says why). Ports handed
// out before in this process are not handed out again, so a node stopped
// and restarted on its port keeps it.
func FreePort(tb testing.TB) int {
	tb.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	p, err := freeport.Pick("127.0.0.1", func(p int) bool { return portsGiven[p] })
	if err != nil {
		tb.Fatal(err)
	}
	portsGiven[p] = true
	return p
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

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

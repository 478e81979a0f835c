// Package testenv finds what tests need on the machine: the real tools
// (nats-server, nats) and free ports, and gives a buffer that a process
// may write while a test reads it. It imports nothing of the project, so
// that any package's tests, the stores' included, may use it.
package testenv

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
//
// It is picked below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), not by listening on port 0:
// a port from that range is handed to the next outgoing connection of any
// process once it is released, so a server started on it a moment later
// could find it taken (CI: "bind: address already in use" for a cluster
// node). Ports handed out before in this process are not handed out again,
// so a node stopped and restarted on its port keeps it.
func FreePort(tb testing.TB) int {
	tb.Helper()
	lo, hi := portRange()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := lo + rand.IntN(hi-lo)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return p
	}
	tb.Fatalf("find a free port: none free in 127.0.0.1:%d-%d", lo, hi-1)
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// portRange returns the ports FreePort picks from, [lo, hi): 10000 up to
// the start of the ephemeral range (32768, Linux's default, where that
// range cannot be read), or 20000-30000 where it leaves too little room
// below it.
func portRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if start, err := strconv.Atoi(f[0]); err == nil {
				hi = start
			}
		}
	}
	if hi-lo < 5000 {
		return 20000, 30000
	}
	return lo, hi
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

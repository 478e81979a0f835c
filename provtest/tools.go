package provtest

import (
	"testing"

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

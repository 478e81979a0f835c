package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitingForName is what `serve` logs when it finds its instance name's
// lease held in the bucket and waits to see whether the holder still runs.
const waitingForName = "another process holds this instance name on the bucket"

// waitStatusOf waits until prov.status.<name> is answered as instance
// name, and fails the test if p exits first.
func (e *haEnv) waitStatusOf(name string, p *proc, within time.Duration) {
	t := e.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var st struct {
			Instance string `json:"instance"`
		}
		err := provCall(e.admin, "prov.status."+name, struct{}{}, 500*time.Millisecond, &st)
		if err == nil && st.Instance == name {
			return
		}
		if err == nil {
			t.Fatalf("prov.status.%s answered as instance %q", name, st.Instance)
		}
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, p.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: prov.status.%s not answered within %s: %v", p.name, name, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestInstanceNameRestartedAfterKill9: `serve` with an explicit instance
// name is killed with SIGKILL, which leaves the name's lease in the
// bucket, unreleased. Its restart with the same config must take the name
// over once the lease has gone unrenewed for 5 s (inside the start's 12 s
// wait, past which it would exit as a second instance of the name) and
// answer prov.status.<instance>. A stop (SIGTERM) releases the name: the
// next restart finds it free and does not wait.
func TestInstanceNameRestartedAfterKill9(t *testing.T) {
	t.Parallel()
	e := newHAEnv(t, haOptions{nodes: 1})
	const name = "phoenix"
	p1 := e.serve(name)
	e.waitStatusOf(name, p1, 30*time.Second)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.done

	began := time.Now()
	p2 := e.serve(name)
	// The start takes the name within 12 s of its first look, or exits;
	// the rest is the start itself on a loaded machine.
	e.waitStatusOf(name, p2, 45*time.Second)
	t.Logf("the restart after SIGKILL answered prov.status.%s %s after it was started", name, time.Since(began).Round(time.Millisecond))
	if !strings.Contains(p2.out.String(), waitingForName) {
		t.Fatalf("the restart after SIGKILL did not find the killed process's lease on the name (no %q in its log): the test did not take a name over\n%s", waitingForName, p2.out.String())
	}

	if err := p2.stop(30 * time.Second); err != nil {
		t.Fatalf("stop %s: %v\n%s", p2.name, err, p2.out.String())
	}
	p3 := e.serve(name)
	e.waitStatusOf(name, p3, 45*time.Second)
	if strings.Contains(p3.out.String(), waitingForName) {
		t.Fatalf("the restart after a stop found the name still held (%q in its log): the stop did not release it\n%s", waitingForName, p3.out.String())
	}
}

package e2e

import (
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/testenv"
)

// TestPausedInstanceCarriesOutNoLateRequest: requests sent to an instance
// that is paused (SIGSTOP: a stalled host, a debugger) wait in its socket;
// their callers time out and may retry. Carried out once it went on, each
// made an account (or a user) its caller had given up on. A caller that
// gives its deadline, as the CLI does and natscli can with -H, has such a
// request answered "not begun" and nothing done.
func TestPausedInstanceCarriesOutNoLateRequest(t *testing.T) {
	t.Parallel()
	d := newDeploymentWith(t, "file")
	d.startServer()
	d.startServe()
	testenv.Pause(t, d.serve.cmd.Process)
	t.Cleanup(func() { d.serve.cmd.Process.Signal(syscall.SIGCONT) })

	out, err := d.run(10*time.Second, d.provisioner, "account", "create", "late-cli", "--server", d.url, "--creds", filepath.Join(d.dir, "admin.creds"), "--timeout", "1s")
	if err == nil || !strings.Contains(out, "no reply") {
		t.Fatalf("provisioner account create with the instance paused: %v\n%s\nwant no reply in time", err, out)
	}
	deadline := time.Now().Add(500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	// natscli's output on a timeout varies by version: only the end
	// state below tells.
	out, err = d.natsAdmin(10*time.Second, "--timeout", "1s", "request", "-H", api.DeadlineHeader+":"+deadline, "prov.account.create", `{"name":"late-natscli"}`)
	t.Logf("nats request with the instance paused: %v\n%s", err, out)
	if err := d.serve.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The next create comes behind the late ones on the same subscription.
	d.request("prov.account.create", `{"name":"after"}`)
	rep := d.request("prov.account.list", `{}`)
	var names []string
	for _, a := range rep["accounts"].([]any) {
		names = append(names, a.(map[string]any)["name"].(string))
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "after" {
		t.Errorf("accounts after the pause: %v, want after alone: the late requests were carried out", names)
	}
}

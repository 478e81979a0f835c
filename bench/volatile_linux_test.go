package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// tinyRun starts a deployment of the file store in dir and measures one
// small row, enough for a report.
func tinyRun(t *testing.T, dir string) *Report {
	t.Helper()
	o := Options{Dir: dir, Store: StoreFile, N: 8, C: 2, CHigh: 2, Rounds: 1, Revocations: 1, Versions: 1,
		Only: regexp.MustCompile(`^user\.create floor`)}
	e, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	rep, err := Run(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// A deployment on tmpfs measures no durable setting: the file store's
// fdatasync and the servers' sync_interval always reach no disk there and
// cost nothing. The report says so, in its text and its JSON, rather than
// passing such numbers off as the durable settings'.
func TestReportSaysWhenTheDeploymentIsOnTmpfs(t *testing.T) {
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != 0x01021994 {
		t.Skip("no tmpfs at /dev/shm")
	}
	shm, err := os.MkdirTemp("/dev/shm", "bench-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	rep := tinyRun(t, shm)
	var text bytes.Buffer
	rep.Print(&text)
	js, _ := json.Marshal(rep)
	if !strings.Contains(text.String(), "tmpfs") || !strings.Contains(string(js), `"storage":"tmpfs`) {
		t.Fatalf("a run on tmpfs: the report does not say so\ntext:\n%s\njson: %s", text.String(), js)
	}

	disk := t.TempDir()
	if err := syscall.Statfs(disk, &st); err != nil || st.Type == 0x01021994 {
		t.Skip("the test's temp dir is on tmpfs")
	}
	rep = tinyRun(t, disk)
	text.Reset()
	rep.Print(&text)
	if strings.Contains(text.String(), "tmpfs") {
		t.Fatalf("a run on disk reported as on tmpfs:\n%s", text.String())
	}
}

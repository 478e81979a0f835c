package kvstore

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// putBack stops the deployment's one embedded server, runs change on its
// JetStream directory (dir) while it is down, and starts it again.
func putBack(t *testing.T, d *deployment, change func(dir string)) {
	t.Helper()
	d.nodes[0].emb.Stop()
	change(filepath.Join(d.dir, "js1"))
	d.restart(t, "n1")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", from, to).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", from, to, err, out)
	}
}

// TestBucketPutBackThenWrittenPast: the server's JetStream directory is put
// back from a copy (as a restore from a backup does, the stream keeps its
// creation time), and another instance started on it writes past the
// revision this instance had seen before this one's watchdog looked three
// times. The put-back was then never noticed: the stream did not end
// before the seen revision for three ticks in a row, and its creation
// time was the one opened. The instance kept answering with an account
// the bucket no longer holds, and its watcher, resumed after the seen
// revision, skipped the other instance's entries before it.
func TestBucketPutBackThenWrittenPast(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	k, _ := newSealKey(t)
	log, lb := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k, Logger: log})
	ctx := bg(t)
	a := newAccount(t, "acme")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "js1")
	putBack(t, d, func(dir string) { copyDir(t, dir, backup) })
	// Written after the backup: what the put-back loses.
	var after []provision.Account
	for i := range 3 {
		b := newAccount(t, fmt.Sprintf("after-%d", i))
		var err error
		eventually(t, 20*time.Second, "a create once the server is back", func() bool {
			_, err = s.CreateAccount(ctx, b)
			return err == nil || !errors.Is(err, provision.ErrUnavailable)
		})
		if err != nil {
			t.Fatal(err)
		}
		after = append(after, b)
	}
	putBack(t, d, func(dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, backup, dir)
	})
	// Another instance starts on the bucket put back and writes at once,
	// past the revision the first had seen.
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	for i := range 2 * len(after) {
		if _, err := other.CreateAccount(ctx, newAccount(t, fmt.Sprintf("other-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the first instance finds its bucket put back", func() bool { return s.Broken() != nil })
	if _, err := s.Account(ctx, after[0].PublicKey); !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("read of an account the bucket put back no longer holds: %v, want unavailable", err)
	}
	if !strings.Contains(lb.String(), "earlier state") {
		t.Errorf("no word of the bucket put back in the log:\n%s", lb.String())
	}
}

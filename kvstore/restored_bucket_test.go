package kvstore

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

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
	d, k, s, lb, ctx, _ := acmeStore(t)
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

// TestCatchUpStaysOffTheNewBucket: the watchdog's catch-up reads the
// entries a stalled watcher missed one by one, by revision, up to 2000 of
// them (tens of seconds on R3), after a single look at the stream. A
// bucket deleted and made again meanwhile had its entries, revisions of
// another bucket, applied to the mirror and acted on: a name entry removed
// there, whose name the mirror held for a live account, was written back
// into the new bucket, pointing to an account it has never held.
func TestCatchUpStaysOffTheNewBucket(t *testing.T) {
	t.Parallel()
	d, k, s, lb, ctx, a := acmeStore(t)
	if err := s.SeenThrough(ctx, mirrorRevision(s, a.PublicKey)); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	watched, named := s.m.watched, s.m.revs[nameKey(a.Name)]
	s.mu.RUnlock()
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	// The bucket is replaced once the catch-up has begun, after the
	// watchdog's look at the stream.
	var last uint64
	var once sync.Once
	hook := func(uint64) {
		once.Do(func() {
			if err := js.DeleteKeyValue(ctx, s.opts.Bucket); err != nil {
				t.Error(err)
				return
			}
			other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
			// Another account's name entry for acme, removed by hand.
			if last, err = removedNameInNewBucket(ctx, t, other, a.Name, watched); err != nil {
				t.Error(err)
			}
		})
	}
	s.catchUpHook.Store(&hook)
	// As the watchdog does for a watcher stalled at watched while the
	// stream it looked at ends 10 entries later.
	s.catchUp(watched, watched+10)
	eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
	time.Sleep(time.Second) // the name loop writes back what it was handed
	kv, err := js.KeyValue(ctx, s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	noNameEntry(ctx, t, kv, a.Name, "the store", lb)
	s.mu.RLock()
	held := s.m.revs[nameKey(a.Name)]
	s.mu.RUnlock()
	if held != named {
		t.Errorf("the store's mirror applied the new bucket's entry for %s at revision %d (new bucket's last: %d)", nameKey(a.Name), held, last)
	}
}

package kvstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPutBackSameKeyAtSameRevision: the bucket is put back from a copy
// taken before this instance's last write (an update of acme), and
// another instance started on it updates acme too, from the revision the
// copy holds: its write lands at the very revision this instance's did,
// under the same key, with another value. The watchdog's look, which
// compared only the key, found the entry it had applied still there; the
// put-back was never noticed, and this instance went on showing (and
// building on, its compare-and-set passing at that revision) a version
// the bucket does not hold.
func TestPutBackSameKeyAtSameRevision(t *testing.T) {
	t.Parallel()
	d, k, s, _, ctx, a := acmeStore(t)
	base := mirrorRevision(s, a.PublicKey)
	backup := filepath.Join(t.TempDir(), "js1")
	putBack(t, d, func(dir string) { copyDir(t, dir, backup) })

	mine := a
	mine.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+1)
	var rev uint64
	eventually(t, 20*time.Second, "an update once the server is back", func() bool {
		var err error
		rev, err = s.UpdateAccount(ctx, mine, base)
		return err == nil
	})
	// The watcher brings the write back, as it does every entry.
	if err := s.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}

	putBack(t, d, func(dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, backup, dir)
	})
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	theirs := a
	theirs.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+2)
	orev, err := other.UpdateAccount(ctx, theirs, base)
	if err != nil {
		t.Fatal(err)
	}
	if orev != rev {
		t.Skipf("the other instance's write landed at revision %d, not %d: nothing to compare", orev, rev)
	}
	// The watchdog's own look, made here so that its answer does not
	// depend on how many of its ticks fell before the other write.
	s.mu.RLock()
	top := s.m.top
	s.mu.RUnlock()
	if top.rev != rev {
		t.Fatalf("the mirror's top entry is at revision %d, want %d", top.rev, rev)
	}
	missing, err := s.missingEntry(top)
	if err != nil {
		t.Fatal(err)
	}
	if missing.rev == 0 {
		t.Errorf("the stream holds another value of %s at revision %d than the one this instance applied, and the watchdog finds it held: the put-back goes unnoticed", top.key, rev)
	}
}

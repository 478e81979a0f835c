package kvstore

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPutBackAfterOnlyALease: between the backup and its put-back, this
// instance's only write was a lease (the reconcile lease, renewed by a
// quiet deployment's leader), and another instance started on the bucket
// put back writes past it at once (an account created: its name entry
// at the lease's revision). The watchdog checked only the entries the
// mirror holds, leases not among them: it found the last one, from
// before the backup, still there, and the stream no shorter than the
// revision seen, so the put-back went unnoticed; and the watcher, resumed
// after the lease's revision, never brought the other instance's name
// entry: its account stayed hidden here.
func TestPutBackAfterOnlyALease(t *testing.T) {
	t.Parallel()
	d, k, s, _, ctx, _ := acmeStore(t)
	backup := filepath.Join(t.TempDir(), "js1")
	putBack(t, d, func(dir string) { copyDir(t, dir, backup) })

	eventually(t, 20*time.Second, "a lease once the server is back", func() bool {
		held, err := s.TryLease(ctx, "reconcile", time.Minute)
		return err == nil && held
	})
	e, err := s.kv.Get(ctx, leasePrefix+"reconcile")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeenThrough(ctx, e.Revision()); err != nil {
		t.Fatal(err)
	}

	putBack(t, d, func(dir string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		copyDir(t, backup, dir)
	})
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	if _, err := other.CreateAccount(ctx, newAccount(t, "later")); err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	top := s.m.top
	s.mu.RUnlock()
	missing, err := s.missingEntry(top)
	if err != nil {
		t.Fatal(err)
	}
	if missing.rev == 0 {
		t.Errorf("the watchdog's look finds the bucket sound (its last entry checked: %s at revision %d), though the lease this instance wrote at revision %d is no longer there", top.key, top.rev, e.Revision())
	}
}

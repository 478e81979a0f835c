package kvstore

import (
	"strings"
	"testing"
)

// TestCatchUpLogsADamagedAccountRecord: an account record damaged (written
// by hand) while the watcher is stalled, read by the watchdog's catch-up,
// went into the mirror without a word: the watcher, moving again, skips an
// entry the mirror holds, and only the watcher logged such a record. Its
// reads failed, and the next restart refused the bucket, with nothing
// logged in between; it is logged at ERROR whoever brings it.
func TestCatchUpLogsADamagedAccountRecord(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	ctx := bg(t)
	key, _ := newSealKey(t)
	lb, logs := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "s", Logger: lb})
	sa := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "sa"})
	a := newAccount(t, "acme")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	release := stallWatcher(t, sa, s)
	rev, err := sa.kv.Put(ctx, accountKey(a.PublicKey), []byte("{damaged"))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.RLock()
	watched := s.m.watched
	s.mu.RUnlock()
	// As the watchdog does for a watcher stalled at watched.
	s.catchUp(watched, rev)
	if got := mirrorRevision(s, a.PublicKey); got != rev {
		t.Fatalf("the catch-up left the account at revision %d, want the damaged record's %d", got, rev)
	}
	release()
	if err := s.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, accountKey(a.PublicKey)) {
			line = l
		}
	}
	if line == "" {
		t.Errorf("the damaged record of %s, read by the catch-up, was logged at no ERROR", a.PublicKey)
	}
}

package kvstore

import (
	"context"
	"testing"
	"time"
)

// restrictedCreds writes a creds file for a user of the service account
// that may not publish to deny: a write there is dropped by the server
// (a permissions violation) and its request waits out its whole timeout,
// as a write does while JetStream stalls.
func restrictedCreds(t testing.TB, d *deployment, deny string) string {
	t.Helper()
	return userCreds(t, d.dir, d.svcKeys[0], d.svcKeys[1], "restricted", deny)
}

// TestNameWriteBackDoesNotStallTheWatcher: a name entry removed by hand
// under a running store is written back, but the write was made on the
// watcher's goroutine: while it waited (a slow server, a stalled stream,
// up to Options.Timeout) the mirror applied nothing else, and every
// SeenThrough timed out (503s). The write-back now runs beside the
// watcher.
func TestNameWriteBackDoesNotStallTheWatcher(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	k, _ := newSealKey(t)
	opts := Options{Seal: k, Timeout: 5 * time.Second}
	a := newAccount(t, "victim")
	// The store's own writes of the victim's name entry wait out their
	// timeout; everything else goes through.
	s := openStore(t, d.connect(t, restrictedCreds(t, d, "$KV."+"provisioner."+nameKey(a.Name))), opts)
	other := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := bg(t)
	if _, err := other.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.SeenThrough(ctx, mirrorRevision(other, a.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := other.kv.Delete(ctx, nameKey(a.Name)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the watcher meets the delete
	b := newAccount(t, "bystander")
	rev, err := other.CreateAccount(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.SeenThrough(sctx, rev); err != nil {
		t.Fatalf("SeenThrough of another account's create while the name entry's write-back waits: %v (after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	if got, err := s.AccountByName(ctx, b.Name); err != nil || got.PublicKey != b.PublicKey {
		t.Fatalf("AccountByName of the account created meanwhile: %v, %v", got.PublicKey, err)
	}
}

package kvstore

import (
	"strings"
	"testing"
)

// TestDamagedNameEntryIsReportedNotSwept: a name entry written by hand
// with something that is no account key is damage, which must be reported.
// The running store hid the account without a word, and the next open took
// its record for a create that lost its name and removed it, seeds and
// all (history 1 keeps nothing of it).
func TestDamagedNameEntryIsReportedNotSwept(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "damaged")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Put(ctx, nameKey(a.Name), []byte("not an account key")); err != nil {
		t.Fatal(err)
	}
	log, lb := newLog(t)
	opts.Logger = log
	openStore(t, d.connect(t, d.svcCreds), opts)
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the record of an account whose name entry is damaged: %v, want it kept", err)
	}
	if !strings.Contains(lb.String(), nameKey(a.Name)) {
		t.Fatalf("the damaged name entry %s is not named in the log", nameKey(a.Name))
	}
}

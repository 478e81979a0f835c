package kvstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// TestDamagedNameEntryIsReportedNotSwept: a name entry written by hand
// with something that is no account key is damage, which must be reported.
// The running store hid the account without a word, and the next open took
// its record for a create that lost its name and removed it, seeds and
// all (history 1 keeps nothing of it).
func TestDamagedNameEntryIsReportedNotSwept(t *testing.T) {
	d, s, _ := single(t)
	ctx := bg(t)
	a := damageName(t, s, "not an account key")
	_, lb := openLogged(t, d, s)
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the record of an account whose name entry is damaged: %v, want it kept", err)
	}
	if !strings.Contains(lb.String(), nameKey(a.Name)) {
		t.Fatalf("the damaged name entry %s is not named in the log", nameKey(a.Name))
	}
}

// TestCreateDoesNotTakeOverADamagedNameEntry: a create of a name whose entry
// holds no account key (damage, a write by hand) took the entry over, which
// made the account the entry belonged to a create that lost its name: the
// next open voided its record, seeds and all. The create now fails,
// naming the entry to repair.
func TestCreateDoesNotTakeOverADamagedNameEntry(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := damageName(t, s, "not an account key")
	s2 := openStore(t, d.connect(t, d.svcCreds), opts)
	b := newAccount(t, a.Name)
	_, err := s2.CreateAccount(ctx, b)
	if !errors.Is(err, provision.ErrConflict) || !strings.Contains(err.Error(), nameKey(a.Name)) {
		t.Fatalf("create over a damaged name entry: %v, want ErrConflict naming %s", err, nameKey(a.Name))
	}
	openStore(t, d.connect(t, d.svcCreds), opts)
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the record of the account whose name entry is damaged: %v, want it kept", err)
	}
}

// TestGetByADamagedNameEntrySaysSo: a read by name of an account whose name
// entry holds no account key (damage, a write by hand) returned the decode
// error bare, which the responder answers 500 "internal error": the caller
// learned nothing, and nothing said how to repair it. It now fails as a
// create of the name does, naming the entry and the repair, without
// quoting what the entry holds (it could be anything pasted there).
func TestGetByADamagedNameEntrySaysSo(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	const junk = "pasted-secret-by-mistake"
	a := damageName(t, s, junk)
	s2 := openStore(t, d.connect(t, d.svcCreds), opts)
	_, err := s2.AccountByName(ctx, a.Name)
	t.Logf("get by the damaged name: %v", err)
	switch {
	case !errors.Is(err, provision.ErrConflict):
		t.Fatalf("get by a damaged name entry: %v, want ErrConflict (a bare error is a 500 internal error)", err)
	case !strings.Contains(err.Error(), nameKey(a.Name)) || !strings.Contains(err.Error(), "repair"):
		t.Errorf("get by a damaged name entry: %v, want it to name the entry %s and the repair", err, nameKey(a.Name))
	case strings.Contains(err.Error(), junk):
		t.Errorf("get by a damaged name entry quotes what the entry holds: %v", err)
	}
}

// damageName creates account "damaged" in s and writes what (no account
// key: damage, a write by hand) over its name entry.
func damageName(t *testing.T, s *Store, what string) provision.Account {
	t.Helper()
	ctx := bg(t)
	a := newAccount(t, "damaged")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.kv.Put(ctx, nameKey(a.Name), []byte(what)); err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNameEntryNamingAnotherAccountKeepsTheRecord: a name entry rewritten
// by hand with the key of another account, one with no record or one of
// another name, hid the account it belonged to, and the next open took
// that account's record for a create that lost its name to the account
// named and voided it, seeds and all. A create loses its name before its
// record is written, to a create of the name: a record older than its
// name entry, or one whose name entry names an account of another name
// (its record written since, by an instance that still showed it), is now
// kept, and the log names the entry.
func TestNameEntryNamingAnotherAccountKeepsTheRecord(t *testing.T) {
	other := func(t *testing.T, s *Store) string {
		b := newAccount(t, "other")
		if _, err := s.CreateAccount(bg(t), b); err != nil {
			t.Fatal(err)
		}
		return b.PublicKey
	}
	tests := []struct {
		name   string
		holder func(t *testing.T, s *Store) string
		// writtenAfter writes the record again after the name entry.
		writtenAfter bool
	}{
		{"an account with no record", func(t *testing.T, s *Store) string {
			return newAccount(t, "never-created").PublicKey
		}, false},
		{"an account of another name", other, false},
		{"an account of another name, the record written after", other, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, s, _ := single(t)
			ctx := bg(t)
			a := damageName(t, s, tc.holder(t, s))
			if tc.writtenAfter {
				e, err := s.kv.Get(ctx, accountKey(a.PublicKey))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.kv.Put(ctx, e.Key(), e.Value()); err != nil {
					t.Fatal(err)
				}
			}
			_, lb := openLogged(t, d, s)
			if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
				t.Fatalf("the record of an account whose name entry names another account: %v, want it kept", err)
			}
			if !strings.Contains(lb.String(), nameKey(a.Name)) {
				t.Errorf("the name entry %s is not named in the log", nameKey(a.Name))
			}
		})
	}
}

package kvstore

import (
	"strings"
	"testing"
	"time"
)

// TestDeletedNameEntryOfALiveAccountIsWrittenBack: a name entry removed by
// hand (`nats kv del <bucket> name.<X>`) hid its account, and the next
// open's sweep took the record for a create that lost its name and voided
// it, seeds and all, logged at INFO only. A live record whose name entry is
// missing is no proof of a lost create (history 1 keeps nothing of what the
// entry held): the name entry is written back, and the open says so.
func TestDeletedNameEntryOfALiveAccountIsWrittenBack(t *testing.T) {
	d, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "unnamed")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Stopped, as every instance was: none saw the entry go.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.kv.Delete(ctx, nameKey(a.Name)); err != nil {
		t.Fatal(err)
	}
	s2, lb := openLogged(t, d, s)
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the record of an account whose name entry was removed: %v, want it kept", err)
	}
	got, err := s2.AccountByName(ctx, a.Name)
	if err != nil || got.PublicKey != a.PublicKey || got.IdentitySeed != a.IdentitySeed {
		t.Fatalf("AccountByName after the open: %v, %v; want the account, seeds and all", got.PublicKey, err)
	}
	e, err := s.kv.Get(ctx, nameKey(a.Name))
	if err != nil || string(e.Value()) != a.PublicKey {
		t.Fatalf("name entry after the open: %v, want it written back", err)
	}
	if !strings.Contains(lb.String(), nameKey(a.Name)) {
		t.Fatalf("the open did not warn of the missing name entry %s: %s", nameKey(a.Name), lb.String())
	}
}

// TestDeletedNameEntryIsWrittenBackWhileServing: a name entry removed by
// hand under a running store hid its account at once, and left its name
// free for another create, whose claim would make the record a lost
// create's, voided at the next open. The store that sees the entry go
// while the record is there writes it back.
func TestDeletedNameEntryIsWrittenBackWhileServing(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "unnamed")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.kv.Delete(ctx, nameKey(a.Name)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the name entry is written back", func() bool {
		e, err := s.kv.Get(ctx, nameKey(a.Name))
		return err == nil && string(e.Value()) == a.PublicKey
	})
	if got, err := s.AccountByName(ctx, a.Name); err != nil || got.PublicKey != a.PublicKey {
		t.Fatalf("AccountByName after the name entry was written back: %v, %v", got.PublicKey, err)
	}
	// A removal, whose name entry goes after its record, is left alone.
	got, err := s.AccountByName(ctx, a.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, got.Revision); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := s.kv.Get(ctx, nameKey(a.Name)); err == nil {
		t.Fatal("the name entry of a removed account was written back")
	}
}

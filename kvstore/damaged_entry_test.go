package kvstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestDamagedEntriesAfterOpenAreReported: entries other than account
// records damaged in the bucket (a name entry that holds no account key or
// names an account of another name, a user record that is not one or is
// another key's, a pack that is not one) were logged at ERROR by the
// watcher and nothing more: Damage, which prov.status and the health
// endpoint show, named account records only, and an instance started
// since lacked those users and accounts without a word an operator could
// ask for. Damage now names their keys, on the instance that watched the
// write and on one started since, never what they hold, until each is put
// back whole.
func TestDamagedEntriesAfterOpenAreReported(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "victim")
	b := newAccount(t, "donor")
	for _, x := range []provision.Account{a, b} {
		if _, err := s.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	u := newUser(t, a.PublicKey, "own")
	other := newUser(t, a.PublicKey, "other")
	for _, x := range []provision.User{u, other} {
		if err := s.AddUser(ctx, x, true); err != nil {
			t.Fatal(err)
		}
	}
	addAsync(t, s, newUser(t, a.PublicKey, "packed"))
	packs := packKeys(ctx, t, s)
	if len(packs) != 1 {
		t.Fatalf("packs %v, want one", packs)
	}
	value := func(key string) []byte {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return e.Value()
	}
	const marker = "MARKER-OF-THE-VALUE"
	noAccount := u
	noAccount.Account = marker
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"name entry holding no account key", nameKey(a.Name), []byte(marker)},
		{"name entry naming an account of another name", nameKey(a.Name), []byte(b.PublicKey)},
		{"user record not JSON", userKey(u.PublicKey), []byte("{" + marker)},
		{"user record of another key", userKey(u.PublicKey), value(userKey(other.PublicKey))},
		{"user record of no account", userKey(u.PublicKey), mustJSON(t, noAccount)},
		{"pack not JSON", packs[0], []byte("{" + marker)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.Damage(); err != nil {
				t.Fatalf("Damage before the entry is damaged: %v", err)
			}
			good := value(tc.key)
			put := func(v []byte) {
				t.Helper()
				rev, err := s.kv.Put(ctx, tc.key, v)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.SeenThrough(ctx, rev); err != nil {
					t.Fatal(err)
				}
			}
			put(tc.value)
			started := openStore(t, d.connect(t, d.svcCreds), opts)
			for _, x := range []struct {
				who string
				s   *Store
			}{{"the instance that watched the write", s}, {"an instance started since", started}} {
				err := x.s.Damage()
				switch {
				case err == nil:
					t.Errorf("Damage on %s with %s damaged: nil, want it named", x.who, tc.key)
				case !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), marker) || strings.Contains(err.Error(), b.PublicKey) || strings.Contains(err.Error(), other.PublicKey):
					t.Errorf("Damage on %s: %q, want %s named and nothing of its value", x.who, err, tc.key)
				}
			}
			// Put back whole, nothing is reported.
			put(good)
			eventually(t, 5*time.Second, "Damage clears once the entry is put back", func() bool { return s.Damage() == nil && started.Damage() == nil })
		})
	}
}

// TestNameEntryNamingAnotherAccountIsNotServed: a name entry rewritten by
// hand with the key of an account of another name (no write of the store
// makes one: an account's name never changes) made a read by name answer
// that other account, seeds and all, and hid the account whose name it
// was. The running store keeps what it had, and a store started since
// fails the read as it does for a name entry that holds no account key,
// naming the entry to repair.
func TestNameEntryNamingAnotherAccountIsNotServed(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	b := newAccount(t, "donor")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	a := damageName(t, s, b.PublicKey)
	e, err := s.kv.Get(ctx, nameKey(a.Name))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeenThrough(ctx, e.Revision()); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AccountByName(ctx, a.Name); err != nil || got.PublicKey != a.PublicKey {
		t.Errorf("read by name on the running store: %s, %v; want %s as before", got.PublicKey, err, a.PublicKey)
	}
	started := openStore(t, d.connect(t, d.svcCreds), opts)
	got, err := started.AccountByName(ctx, a.Name)
	if !errors.Is(err, provision.ErrConflict) || !strings.Contains(err.Error(), nameKey(a.Name)) {
		t.Errorf("read by name on a store started since: %s, %v; want ErrConflict naming %s", got.PublicKey, err, nameKey(a.Name))
	}
}

// TestDamagedUserRecordReadIsUnreadable: a user record damaged in the
// bucket (not JSON, another key's record) read by key on an instance
// started since failed with the decoder's error bare, which the responder
// answers 500 "internal error", naming nothing to repair. It now fails
// with provision.ErrUnreadable (503), naming the key and nothing of the
// value.
func TestDamagedUserRecordReadIsUnreadable(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "acme")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "own")
	if err := s.AddUser(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	const marker = "MARKER-OF-THE-VALUE"
	if _, err := s.kv.Put(ctx, userKey(u.PublicKey), []byte("{"+marker)); err != nil {
		t.Fatal(err)
	}
	started := openStore(t, d.connect(t, d.svcCreds), opts)
	_, err := started.User(ctx, u.PublicKey)
	t.Logf("read of the damaged user record: %v", err)
	switch {
	case !errors.Is(err, provision.ErrUnreadable):
		t.Fatalf("read of a damaged user record: %v, want ErrUnreadable", err)
	case !strings.Contains(err.Error(), userKey(u.PublicKey)) || strings.Contains(err.Error(), marker):
		t.Errorf("read of a damaged user record: %q, want its key named and nothing of its value", err)
	}
	if users, err := started.Users(ctx, a.PublicKey); err != nil || len(users) != 0 {
		t.Errorf("the account's users with one record damaged: %v, %v; want none listed and no error", users, err)
	}
}

// TestNameEntryNamingAnAccountUpdatedSinceIsNotServed: a name entry
// rewritten by hand with the key of an account of another name, whose
// record was written again since (an update, a signing-key rotation, a
// re-signing after an operator rotation), was applied by a store started
// since: the load checked the entry against the mirror as it stood at the
// entry's revision, which held no record of that account yet, and a read
// by the name answered the other account, seeds and all.
func TestNameEntryNamingAnAccountUpdatedSinceIsNotServed(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	ctx := bg(t)
	b := newAccount(t, "donor")
	rev, err := s.CreateAccount(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	a := damageName(t, s, b.PublicKey)
	b.JWT = accountJWTAt(t, b.PublicKey, b.Name, time.Now().Unix()+10)
	rev, err = s.UpdateAccount(ctx, b, rev)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	started := openStore(t, d.connect(t, d.svcCreds), opts)
	got, err := started.AccountByName(ctx, a.Name)
	if !errors.Is(err, provision.ErrConflict) || !strings.Contains(err.Error(), nameKey(a.Name)) {
		t.Errorf("read by name on a store started since: %s, %v; want ErrConflict naming %s", got.PublicKey, err, nameKey(a.Name))
	}
	if err := started.Damage(); err == nil || !strings.Contains(err.Error(), nameKey(a.Name)) {
		t.Errorf("Damage on a store started since: %v, want %s named", err, nameKey(a.Name))
	}
}

// TestUsersOfADamagedPackAreNotNotFound: a pack of user records damaged
// in the bucket (not JSON) cannot say which users it held, and an instance
// started since answered a read of one of them by key ErrNotFound (404):
// the caller was told the user does not exist though its record is in
// the bucket, and a create with its key (the service's issuable reads it
// first) issued a key already issued. Such a read now fails with
// provision.ErrUnreadable naming the pack, on an instance that cannot
// tell which users the pack held; one that read the pack whole still
// knows, and answers as before.
func TestUsersOfADamagedPackAreNotNotFound(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "acme")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	packed := []provision.User{newUser(t, a.PublicKey, "one"), newUser(t, a.PublicKey, "two")}
	addAsync(t, s, packed...)
	packs := packKeys(ctx, t, s)
	if len(packs) != 1 {
		t.Fatalf("packs %v, want one", packs)
	}
	const marker = "MARKER-OF-THE-VALUE"
	rev, err := s.kv.Put(ctx, packs[0], []byte("{"+marker))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	never := newUser(t, a.PublicKey, "never")
	started := openStore(t, d.connect(t, d.svcCreds), opts)
	for _, u := range packed {
		_, err := started.User(ctx, u.PublicKey)
		t.Logf("read of a user of the damaged pack: %v", err)
		switch {
		case !errors.Is(err, provision.ErrUnreadable):
			t.Errorf("read of user %s of the damaged pack on a store started since: %v, want ErrUnreadable", u.Name, err)
		case !strings.Contains(err.Error(), packs[0]) || strings.Contains(err.Error(), marker):
			t.Errorf("read of user %s of the damaged pack: %q, want %s named and nothing of its value", u.Name, err, packs[0])
		}
		// The instance that read the pack whole keeps its users.
		if got, err := s.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
			t.Errorf("read of user %s on the store that read the pack whole: %+v, %v; want it as added", u.Name, got, err)
		}
	}
	// That instance knows what the pack held: a key it never held is not
	// found there.
	if _, err := s.User(ctx, never.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("read of a key never issued on the store that read the pack whole: %v, want ErrNotFound", err)
	}
	// Removed by the operator (nats kv del), the pack holds nothing any
	// more: its users are not found.
	if err := s.kv.Delete(ctx, packs[0]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the removed pack's users are not found on the store started since", func() bool {
		_, err := started.User(ctx, packed[0].PublicKey)
		return errors.Is(err, provision.ErrNotFound)
	})
}

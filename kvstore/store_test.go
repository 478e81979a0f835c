package kvstore

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// single starts one server and opens a store on it.
func single(t *testing.T) (*deployment, *Store, Options) {
	t.Helper()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Instance: "one"}
	return d, openStore(t, d.connect(t, d.svcCreds), opts), opts
}

func TestAccountRoundTrip(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "alpha")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if rev == 0 {
		t.Fatal("CreateAccount returned revision 0")
	}
	want := a
	want.Revision = rev
	for name, get := range map[string]func() (provision.Account, error){
		"Account":       func() (provision.Account, error) { return s.Account(ctx, a.PublicKey) },
		"AccountByName": func() (provision.Account, error) { return s.AccountByName(ctx, "alpha") },
	} {
		got, err := get()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s = %+v, want %+v", name, got, want)
		}
	}
	// Reads return copies.
	got, _ := s.Account(ctx, a.PublicKey)
	got.SigningKeys[0].Role = "changed"
	if again, _ := s.Account(ctx, a.PublicKey); again.SigningKeys[0].Role != "" {
		t.Fatal("changing a returned account changed the store")
	}

	b := newAccount(t, "beta")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	all, err := s.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "alpha" || all[1].Name != "beta" {
		t.Fatalf("Accounts = %v, want alpha then beta", all)
	}

	a2 := want
	a2.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+1)
	a2.SigningKeys = append(a2.SigningKeys, newAccount(t, "x").SigningKeys[0])
	rev2, err := s.UpdateAccount(ctx, a2, rev)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 <= rev {
		t.Fatalf("update revision %d not after %d", rev2, rev)
	}
	got, _ = s.Account(ctx, a.PublicKey)
	a2.Revision = rev2
	if !reflect.DeepEqual(got, a2) {
		t.Fatalf("after update: %+v, want %+v", got, a2)
	}
}

func TestCreateAccountRefusals(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	taken := newAccount(t, "taken")
	if _, err := s.CreateAccount(ctx, taken); err != nil {
		t.Fatal(err)
	}
	other := newAccount(t, "other")
	user := newUser(t, taken.PublicKey, "u")
	tests := []struct {
		name string
		give func() provision.Account
		want error
	}{
		{"live name taken", func() provision.Account { return newAccount(t, "taken") }, provision.ErrConflict},
		{"public key taken", func() provision.Account { a := taken; a.Name = "fresh"; return a }, provision.ErrConflict},
		{"not live", func() provision.Account { return tombstone(t, newAccount(t, "dead"), provision.PhaseDisabled, 1) }, provision.ErrInvalid},
		{"no name", func() provision.Account { return newAccount(t, "") }, provision.ErrInvalid},
		{"no JWT", func() provision.Account { a := newAccount(t, "nojwt"); a.JWT = ""; return a }, provision.ErrInvalid},
		{"unknown phase", func() provision.Account { a := newAccount(t, "ph"); a.Phase = "limbo"; return a }, provision.ErrInvalid},
		{"identity seed of another key", func() provision.Account {
			a := newAccount(t, "mismatch")
			a.IdentitySeed = other.IdentitySeed
			return a
		}, provision.ErrInvalid},
		{"signing seed not an account seed", func() provision.Account {
			a := newAccount(t, "usersk")
			a.SigningKeys[0].Seed = provision.Seed(user.PublicKey)
			return a
		}, provision.ErrInvalid},
		{"public key of a user", func() provision.Account { a := newAccount(t, "upub"); a.PublicKey = user.PublicKey; return a }, provision.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.give()
			_, err := s.CreateAccount(ctx, a)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateAccount: %v, want %v", err, tt.want)
			}
			for _, sk := range append(a.SigningKeys, provision.SigningKey{Seed: a.IdentitySeed}) {
				if sk.Seed != "" && strings.Contains(err.Error(), string(sk.Seed)) {
					t.Fatalf("error holds a seed: %v", err)
				}
			}
			all, _ := s.Accounts(ctx)
			if len(all) != 1 {
				t.Fatalf("a refused create changed the store: %d accounts", len(all))
			}
		})
	}
}

func TestUpdateAccountRefusals(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "acct")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	newer := a
	newer.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+5)
	rev2, err := s.UpdateAccount(ctx, newer, rev)
	if err != nil {
		t.Fatal(err)
	}
	dead := tombstone(t, newAccount(t, "dead"), provision.PhaseDisabled, 1)
	deadLive := newAccount(t, "dead")
	deadLive.PublicKey, deadLive.IdentitySeed = dead.PublicKey, ""
	tests := []struct {
		name string
		give provision.Account
		rev  uint64
		want error
	}{
		{"stale revision", a, rev, provision.ErrStale},
		{"unknown account", newAccount(t, "nobody"), rev2, provision.ErrNotFound},
		{"new name", func() provision.Account { x := newer; x.Name = "renamed"; return x }(), rev2, provision.ErrInvalid},
		{"invalid", func() provision.Account { x := newer; x.JWT = ""; return x }(), rev2, provision.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.UpdateAccount(ctx, tt.give, tt.rev); !errors.Is(err, tt.want) {
				t.Fatalf("UpdateAccount: %v, want %v", err, tt.want)
			}
			got, _ := s.Account(ctx, a.PublicKey)
			if got.Revision != rev2 || got.JWT != newer.JWT {
				t.Fatalf("a refused update changed the account: revision %d", got.Revision)
			}
		})
	}
	// A stale revision the mirror cannot tell is caught by the bucket.
	s.mu.Lock()
	s.m.accounts[a.PublicKey].a.Revision = rev
	s.mu.Unlock()
	if _, err := s.UpdateAccount(ctx, a, rev); !errors.Is(err, provision.ErrStale) {
		t.Fatalf("UpdateAccount at a revision only the mirror believes: %v, want ErrStale", err)
	}
}

func TestTombstonesAndNameReuse(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "shared")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "alice")
	if err := s.AddUser(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	// Disabled: still readable by key, no longer by name; the name is free.
	dis := tombstone(t, a, provision.PhaseDisabled, time.Now().Unix()+1)
	rev, err = s.UpdateAccount(ctx, dis, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AccountByName(ctx, "shared"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("AccountByName of a disabled account: %v, want ErrNotFound", err)
	}
	got, err := s.Account(ctx, a.PublicKey)
	if err != nil || got.Phase != provision.PhaseDisabled || got.IdentitySeed != "" || got.SigningKeys != nil {
		t.Fatalf("tombstone = %+v, %v", got, err)
	}
	if err := s.AddUser(ctx, newUser(t, a.PublicKey, "bob"), true); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("AddUser to a tombstone: %v, want ErrNotFound", err)
	}
	b := newAccount(t, "shared")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatalf("create with the name of a tombstone: %v", err)
	}
	// A delete put back (its push failed) makes the tombstone live again:
	// refused once a live account took the name.
	again := a
	if _, err := s.UpdateAccount(ctx, again, rev); !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("making a tombstone live while its name is taken: %v, want ErrConflict", err)
	}
	if got, err := s.AccountByName(ctx, "shared"); err != nil || got.PublicKey != b.PublicKey {
		t.Fatalf("AccountByName = %v, %v; want the new account", got.PublicKey, err)
	}
	all, _ := s.Accounts(ctx)
	if len(all) != 2 || all[0].Name != "shared" || all[1].Name != "shared" {
		t.Fatalf("Accounts = %v, want the tombstone and the new account", all)
	}
	if want := slices.Sorted(slices.Values([]string{a.PublicKey, b.PublicKey})); all[0].PublicKey != want[0] {
		t.Fatal("accounts of one name are not sorted by public key")
	}
	// And with its name free, it is live again, under its name.
	c := newAccount(t, "solo")
	crev, err := s.CreateAccount(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	crev, err = s.UpdateAccount(ctx, tombstone(t, c, provision.PhaseDisabled, time.Now().Unix()), crev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAccount(ctx, c, crev); err != nil {
		t.Fatalf("making a tombstone live again: %v", err)
	}
	if got, err := s.AccountByName(ctx, "solo"); err != nil || got.PublicKey != c.PublicKey || !got.Live() {
		t.Fatalf("AccountByName after the revival = %+v, %v", got, err)
	}

	// Deleted, then removed: gone with its users; the name stays with b.
	del := tombstone(t, a, provision.PhaseDeleted, time.Now().Unix()+2)
	if rev, err = s.UpdateAccount(ctx, del, rev); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev-1); !errors.Is(err, provision.ErrStale) {
		t.Fatalf("RemoveAccount at an old revision: %v, want ErrStale", err)
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("Account after remove: %v", err)
	}
	if _, err := s.User(ctx, u.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("User of a removed account: %v", err)
	}
	if _, err := s.Users(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("Users of a removed account: %v", err)
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("second RemoveAccount: %v, want ErrNotFound", err)
	}
	if got, err := s.AccountByName(ctx, "shared"); err != nil || got.PublicKey != b.PublicKey {
		t.Fatalf("AccountByName after removing the tombstone = %v, %v", got.PublicKey, err)
	}
	// The bucket agrees with the mirror.
	for _, key := range []string{accountKey(a.PublicKey), userKey(u.PublicKey)} {
		if _, err := s.kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("%s after remove: %v", key, err)
		}
	}
}

func TestUsers(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "team")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	b := newAccount(t, "other")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	var issued []provision.User
	for i, name := range []string{"alice", "bob", "alice", "carol", "alice"} {
		u := newUser(t, a.PublicKey, name)
		u.Role = []string{"", "admin"}[i%2]
		if err := s.AddUser(ctx, u, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		issued = append(issued, u)
	}
	ub := newUser(t, b.PublicKey, "alice")
	if err := s.AddUser(ctx, ub, false); err != nil {
		t.Fatal(err)
	}
	// The store that added them lists them in issue order. A store
	// opened later lists each kind in issue order, but a durable record
	// (even i) is written before the records in the background gathered
	// with it (batch.go).
	durable := func(u provision.User) bool { return slices.IndexFunc(issued, u.Equal)%2 == 0 }
	same := func(got, want []provision.User, reopened bool) bool {
		if !reopened {
			return reflect.DeepEqual(got, want)
		}
		if len(got) != len(want) {
			return false
		}
		for _, d := range []bool{true, false} {
			var g, w []provision.User
			for i := range got {
				if durable(got[i]) == d {
					g = append(g, got[i])
				}
				if durable(want[i]) == d {
					w = append(w, want[i])
				}
			}
			if !slices.EqualFunc(g, w, provision.User.Equal) {
				return false
			}
		}
		return true
	}
	check := func(t *testing.T, s *Store, reopened bool) {
		t.Helper()
		got, err := s.Users(ctx, a.PublicKey)
		if err != nil || !same(got, issued, reopened) {
			t.Fatalf("Users = %v, %v; want %v", got, err, issued)
		}
		named, err := s.UsersNamed(ctx, a.PublicKey, "alice")
		want := []provision.User{issued[0], issued[2], issued[4]}
		if err != nil || !same(named, want, reopened) {
			t.Fatalf("UsersNamed alice = %v, %v; want %v", named, err, want)
		}
		if none, err := s.UsersNamed(ctx, a.PublicKey, "zed"); err != nil || len(none) != 0 {
			t.Fatalf("UsersNamed zed = %v, %v", none, err)
		}
		for _, u := range append(issued, ub) {
			if got, err := s.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
				t.Fatalf("User(%s) = %v, %v", u.PublicKey, got, err)
			}
		}
	}
	check(t, s, false)

	refusals := []struct {
		name string
		give provision.User
		want error
	}{
		{"key issued (durable)", issued[1], provision.ErrConflict},
		{"unknown account", newUser(t, newAccount(t, "x").PublicKey, "u"), provision.ErrNotFound},
		{"bad user key", provision.User{PublicKey: a.PublicKey, Account: a.PublicKey, Name: "u"}, provision.ErrInvalid},
		{"bad account key", provision.User{PublicKey: issued[0].PublicKey, Account: "nope", Name: "u"}, provision.ErrInvalid},
	}
	for _, tt := range refusals {
		for _, durable := range []bool{true, false} {
			if err := s.AddUser(ctx, tt.give, durable); !errors.Is(err, tt.want) {
				t.Fatalf("%s (durable %v): %v, want %v", tt.name, durable, err, tt.want)
			}
		}
	}
	if _, err := s.User(ctx, newUser(t, a.PublicKey, "n").PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("User of an unknown key: %v", err)
	}
	check(t, s, false)

	// Everything is in the bucket: a new store on it reads the same, in
	// the same order, once Close has waited for the asynchronous writes.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Users(ctx, a.PublicKey); !errors.Is(err, provision.ErrUnavailable) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Users after Close: %v, want ErrClosed", err)
	}
	if err := s.AddUser(ctx, newUser(t, a.PublicKey, "late"), false); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser after Close: %v, want ErrUnavailable", err)
	}
	check(t, openStore(t, d.connect(t, d.svcCreds), opts), true)
}

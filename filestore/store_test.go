package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	s := open(t, dir, Options{})

	// Created in an order other than the name order.
	names := []string{"charlie", "alpha", "bravo"}
	accts := map[string]provision.Account{}
	var lastRev uint64
	for _, n := range names {
		a := newAccount(t, n)
		rev, err := s.CreateAccount(ctx, a)
		if err != nil {
			t.Fatalf("CreateAccount(%s): %v", n, err)
		}
		if rev <= lastRev {
			t.Fatalf("revision %d after %d: revisions must grow", rev, lastRev)
		}
		lastRev = rev
		a.Revision = rev
		accts[n] = a
	}

	t.Run("get", func(t *testing.T) {
		for n, want := range accts {
			got, err := s.Account(ctx, want.PublicKey)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Account(%s) = %+v, %v; want %+v", n, got, err, want)
			}
			got, err = s.AccountByName(ctx, n)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("AccountByName(%s) = %+v, %v; want %+v", n, got, err, want)
			}
		}
	})

	t.Run("list sorted by name", func(t *testing.T) {
		got, err := s.Accounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var gotNames []string
		for _, a := range got {
			gotNames = append(gotNames, a.Name)
		}
		if want := []string{"alpha", "bravo", "charlie"}; !reflect.DeepEqual(gotNames, want) {
			t.Errorf("Accounts names = %v, want %v", gotNames, want)
		}
	})

	t.Run("returned values are copies", func(t *testing.T) {
		a, _ := s.Account(ctx, accts["alpha"].PublicKey)
		a.SigningKeys[0].Role = "mutated"
		again, _ := s.Account(ctx, accts["alpha"].PublicKey)
		if again.SigningKeys[0].Role == "mutated" {
			t.Error("Account returns the store's own signing keys")
		}
	})

	t.Run("update", func(t *testing.T) {
		a := accts["alpha"]
		a.SigningKeys[0].Role = "admin"
		a.JWT = accountJWT(t, a.PublicKey, "alpha v2", mustPub(t, a.SigningKeys[0].Seed))
		rev, err := s.UpdateAccount(ctx, a, a.Revision)
		if err != nil {
			t.Fatal(err)
		}
		if rev <= a.Revision {
			t.Fatalf("update gave revision %d, not above %d", rev, a.Revision)
		}
		a.Revision = rev
		accts["alpha"] = a
		got, _ := s.Account(ctx, a.PublicKey)
		if !reflect.DeepEqual(got, a) {
			t.Errorf("after update: %+v, want %+v", got, a)
		}
	})

	t.Run("users", func(t *testing.T) {
		a := accts["bravo"]
		u1 := newUser(t, a.PublicKey, "web", 10)
		u2 := newUser(t, a.PublicKey, "batch", 20)
		u3 := newUser(t, a.PublicKey, "web", 30)
		u3.ExpiresAt, u3.Role, u3.Signer = 99, "ops", mustPub(t, a.SigningKeys[0].Seed)
		u4 := newUser(t, a.PublicKey, "revoked", 0)
		u4.Revoked = true
		for i, u := range []provision.User{u1, u2, u3, u4} {
			if err := s.AddUser(ctx, u, i%2 == 0); err != nil {
				t.Fatalf("AddUser: %v", err)
			}
		}
		us, err := s.Users(ctx, a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if want := []provision.User{u1, u2, u3, u4}; !reflect.DeepEqual(us, want) {
			t.Errorf("Users = %+v, want %+v (issue order)", us, want)
		}
		web, err := s.UsersNamed(ctx, a.PublicKey, "web")
		if err != nil {
			t.Fatal(err)
		}
		if want := []provision.User{u1, u3}; !reflect.DeepEqual(web, want) {
			t.Errorf("UsersNamed(web) = %+v, want %+v", web, want)
		}
		none, err := s.UsersNamed(ctx, a.PublicKey, "nobody")
		if err != nil || len(none) != 0 {
			t.Errorf("UsersNamed(nobody) = %+v, %v; want none", none, err)
		}
		if got, err := s.User(ctx, u3.PublicKey); err != nil || !got.Equal(u3) {
			t.Errorf("User(u3) = %+v, %v", got, err)
		}
		us[0].Name = "mutated"
		if again, _ := s.Users(ctx, a.PublicKey); again[0].Name == "mutated" {
			t.Error("Users returns the store's own records")
		}
	})

	t.Run("remove", func(t *testing.T) {
		a := accts["charlie"]
		u := newUser(t, a.PublicKey, "gone", 1)
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveAccount(ctx, a.PublicKey, a.Revision); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("Account of a removed account: %v, want ErrNotFound", err)
		}
		if _, err := s.User(ctx, u.PublicKey); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("User of a removed account: %v, want ErrNotFound", err)
		}
		// The user key is free again, in another account.
		u.Account = accts["alpha"].PublicKey
		if err := s.AddUser(ctx, u, true); err != nil {
			t.Errorf("AddUser of a key forgotten with its account: %v", err)
		}
	})

	want := dumpOf(t, s)
	closeStore(t, s)
	s = open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
	// The sequence goes on where it was: no revision is given twice.
	rev, err := s.CreateAccount(ctx, newAccount(t, "after-reopen"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range want.Accounts {
		if rev <= a.Revision {
			t.Errorf("revision %d after reopen is not above %d", rev, a.Revision)
		}
	}
	want = dumpOf(t, s)
	closeStore(t, s)
	// A journal on top of the snapshot is read too.
	s = open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	live := newAccount(t, "taken")
	liveRev, err := s.CreateAccount(ctx, live)
	if err != nil {
		t.Fatal(err)
	}
	live.Revision = liveRev
	dead := newAccount(t, "dead")
	deadRev, err := s.CreateAccount(ctx, dead)
	if err != nil {
		t.Fatal(err)
	}
	if deadRev, err = s.UpdateAccount(ctx, tombstone(t, dead, provision.PhaseDisabled), deadRev); err != nil {
		t.Fatal(err)
	}
	revived := newAccount(t, "dead") // takes the tombstone's name
	if _, err := s.CreateAccount(ctx, revived); err != nil {
		t.Fatalf("a tombstone's name is free: %v", err)
	}
	user := newUser(t, live.PublicKey, "u", 1)
	if err := s.AddUser(ctx, user, false); err != nil {
		t.Fatal(err)
	}
	other := newAccount(t, "other")
	otherSigner := newAccount(t, "x").SigningKeys[0]

	mod := func(a provision.Account, f func(*provision.Account)) provision.Account {
		a.SigningKeys = append([]provision.SigningKey(nil), a.SigningKeys...)
		f(&a)
		return a
	}
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"create with a live name", func() error {
			_, err := s.CreateAccount(ctx, newAccount(t, "taken"))
			return err
		}, provision.ErrConflict},
		{"create with a live key", func() error {
			_, err := s.CreateAccount(ctx, mod(live, func(a *provision.Account) { a.Name = "new" }))
			return err
		}, provision.ErrConflict},
		{"create with a tombstone's key", func() error {
			_, err := s.CreateAccount(ctx, mod(dead, func(a *provision.Account) { a.Name = "fresh" }))
			return err
		}, provision.ErrConflict},
		{"create a tombstone", func() error { _, err := s.CreateAccount(ctx, tombstone(t, other, provision.PhaseDeleted)); return err }, provision.ErrInvalid},
		{"create with no name", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.Name = "" }))
			return err
		}, provision.ErrInvalid},
		{"create with a user key", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.PublicKey = user.PublicKey }))
			return err
		}, provision.ErrInvalid},
		{"create with another identity seed", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.IdentitySeed = live.IdentitySeed }))
			return err
		}, provision.ErrInvalid},
		{"create with a broken seed", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) {
				// One character changed (it was "A" one run in 32, which
				// left the seed whole and the create went through).
				c := "A"
				if a.IdentitySeed[20] == 'A' {
					c = "B"
				}
				a.IdentitySeed = a.IdentitySeed[:20] + provision.Seed(c) + a.IdentitySeed[21:]
			}))
			return err
		}, provision.ErrInvalid},
		{"create with a signing key the JWT does not list", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.SigningKeys = append(a.SigningKeys, otherSigner) }))
			return err
		}, provision.ErrInvalid},
		{"create with another account's JWT", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.JWT = live.JWT }))
			return err
		}, provision.ErrInvalid},
		{"create with a JWT that is not one", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.JWT = "not-a-jwt" }))
			return err
		}, provision.ErrInvalid},
		{"create with an unknown phase", func() error {
			_, err := s.CreateAccount(ctx, mod(other, func(a *provision.Account) { a.Phase = "zombie" }))
			return err
		}, provision.ErrInvalid},
		{"update unknown", func() error { _, err := s.UpdateAccount(ctx, other, 1); return err }, provision.ErrNotFound},
		{"update at an old revision", func() error { _, err := s.UpdateAccount(ctx, live, liveRev-1); return err }, provision.ErrStale},
		{"update at a future revision", func() error { _, err := s.UpdateAccount(ctx, live, liveRev+1000); return err }, provision.ErrStale},
		{"update renames", func() error {
			_, err := s.UpdateAccount(ctx, mod(live, func(a *provision.Account) { a.Name = "renamed" }), liveRev)
			return err
		}, provision.ErrInvalid},
		{"update revives a tombstone whose name is taken", func() error {
			_, err := s.UpdateAccount(ctx, dead, deadRev)
			return err
		}, provision.ErrConflict},
		{"remove unknown", func() error { return s.RemoveAccount(ctx, other.PublicKey, 1) }, provision.ErrNotFound},
		{"remove at an old revision", func() error { return s.RemoveAccount(ctx, live.PublicKey, liveRev-1) }, provision.ErrStale},
		{"user of an unknown account", func() error { return s.AddUser(ctx, newUser(t, other.PublicKey, "u", 1), false) }, provision.ErrNotFound},
		{"user of a tombstone", func() error { return s.AddUser(ctx, newUser(t, dead.PublicKey, "u", 1), false) }, provision.ErrNotFound},
		{"durable user of a tombstone", func() error { return s.AddUser(ctx, newUser(t, dead.PublicKey, "u", 1), true) }, provision.ErrNotFound},
		{"user key issued twice", func() error { return s.AddUser(ctx, user, false) }, provision.ErrConflict},
		{"user key issued twice, durable", func() error { return s.AddUser(ctx, user, true) }, provision.ErrConflict},
		{"user key in another account", func() error {
			u := user
			u.Account = revived.PublicKey
			return s.AddUser(ctx, u, false)
		}, provision.ErrConflict},
		{"user with an account key", func() error {
			u := user
			u.PublicKey = other.PublicKey
			return s.AddUser(ctx, u, false)
		}, provision.ErrInvalid},
	}
	before := dumpOf(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			for _, seed := range []provision.Seed{live.IdentitySeed, other.IdentitySeed, otherSigner.Seed, other.SigningKeys[0].Seed} {
				if strings.Contains(err.Error(), string(seed)) {
					t.Fatalf("the error holds a seed: %v", err)
				}
			}
		})
	}
	assertDump(t, dumpOf(t, s), before)

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.CreateAccount(cctx, other); !errors.Is(err, context.Canceled) {
			t.Errorf("create with a cancelled context: %v", err)
		}
		assertDump(t, dumpOf(t, s), before)
	})

	t.Run("closed", func(t *testing.T) {
		closeStore(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		for name, err := range map[string]error{
			"create": func() error { _, err := s.CreateAccount(ctx, other); return err }(),
			"update": func() error { _, err := s.UpdateAccount(ctx, live, liveRev); return err }(),
			"remove": s.RemoveAccount(ctx, live.PublicKey, liveRev),
			"user":   s.AddUser(ctx, newUser(t, live.PublicKey, "late", 1), false),
			"read":   func() error { _, err := s.Account(ctx, live.PublicKey); return err }(),
		} {
			if !errors.Is(err, ErrClosed) || !errors.Is(err, provision.ErrUnavailable) {
				t.Errorf("%s after Close: %v, want ErrClosed and ErrUnavailable", name, err)
			}
		}
	})
}

func TestTombstones(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := newAccount(t, "shop")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "web", 1)
	if err := s.AddUser(ctx, u, false); err != nil {
		t.Fatal(err)
	}
	disabled := tombstone(t, a, provision.PhaseDisabled)
	if rev, err = s.UpdateAccount(ctx, disabled, rev); err != nil {
		t.Fatal(err)
	}
	disabled.Revision = rev

	if _, err := s.AccountByName(ctx, "shop"); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("AccountByName of a tombstone's name: %v, want ErrNotFound", err)
	}
	if got, err := s.Account(ctx, a.PublicKey); err != nil || !reflect.DeepEqual(got, disabled) {
		t.Errorf("Account(tombstone) = %+v, %v; want %+v", got, err, disabled)
	}
	if us, err := s.Users(ctx, a.PublicKey); err != nil || len(us) != 1 || !us[0].Equal(u) {
		t.Errorf("a tombstone's users: %+v, %v; want [%+v]", us, err, u)
	}
	if got, err := s.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
		t.Errorf("User of a tombstone's user: %+v, %v", got, err)
	}

	// The name is free for a new account; the key is not.
	b := newAccount(t, "shop")
	bRev, err := s.CreateAccount(ctx, b)
	if err != nil {
		t.Fatalf("a new account with a tombstone's name: %v", err)
	}
	if got, err := s.AccountByName(ctx, "shop"); err != nil || got.PublicKey != b.PublicKey {
		t.Errorf("AccountByName(shop) = %s, %v; want the new account %s", got.PublicKey, err, b.PublicKey)
	}
	all, _ := s.Accounts(ctx)
	if len(all) != 2 || all[0].Name != "shop" || all[1].Name != "shop" || all[0].PublicKey > all[1].PublicKey {
		t.Errorf("Accounts with one name twice are not sorted by key: %v", describe(dump{Accounts: all}))
	}

	// Disabled to deleted, then removed after retention.
	deleted := tombstone(t, a, provision.PhaseDeleted)
	if rev, err = s.UpdateAccount(ctx, deleted, rev); err != nil {
		t.Fatal(err)
	}
	want := dumpOf(t, s)
	closeStore(t, s)
	s = open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("a removed tombstone: %v", err)
	}
	if got, err := s.AccountByName(ctx, "shop"); err != nil || got.PublicKey != b.PublicKey || got.Revision != bRev {
		t.Errorf("removing the tombstone touched the live account: %+v, %v", got, err)
	}
}

func TestConcurrentUpdatesOneWins(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	a := newAccount(t, "contested")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	for round := range 10 {
		var wg sync.WaitGroup
		errs := make([]error, n)
		revs := make([]uint64, n)
		for i := range n {
			wg.Go(func() { revs[i], errs[i] = s.UpdateAccount(ctx, a, rev) })
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
				rev = revs[i]
			case !errors.Is(err, provision.ErrStale):
				t.Fatalf("round %d: %v, want nil or ErrStale", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d updates at one revision won, want 1", round, won)
		}
	}
	for range 10 {
		b, c := newAccount(t, "same"), newAccount(t, "same")
		var errB, errC error
		var wg sync.WaitGroup
		wg.Go(func() { _, errB = s.CreateAccount(ctx, b) })
		wg.Go(func() { _, errC = s.CreateAccount(ctx, c) })
		wg.Wait()
		if (errB == nil) == (errC == nil) || !errors.Is(errors.Join(errB, errC), provision.ErrConflict) {
			t.Fatalf("two creates of one name: %v and %v; want exactly one ErrConflict", errB, errC)
		}
		winner := b
		if errB != nil {
			winner = c
		}
		got, _ := s.Account(ctx, winner.PublicKey)
		if err := s.RemoveAccount(ctx, winner.PublicKey, got.Revision); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrency runs writers and readers of every kind at once, under
// the race detector, and checks that a reopen gives back what they left.
func TestConcurrency(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, Options{CompactBytes: 32 << 10}) // compacts while they run
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*100)
	for w := range workers {
		wg.Go(func() {
			for i := range 5 {
				a := newAccount(t, fmt.Sprintf("w%d-%d", w, i))
				rev, err := s.CreateAccount(ctx, a)
				if err != nil {
					errs <- err
					return
				}
				for j := range 6 {
					if err := s.AddUser(ctx, newUser(t, a.PublicKey, fmt.Sprintf("u%d", j%3), int64(j)), j%3 == 0); err != nil {
						errs <- err
					}
				}
				a.JWT = accountJWT(t, a.PublicKey, "v2", mustPub(t, a.SigningKeys[0].Seed))
				if rev, err = s.UpdateAccount(ctx, a, rev); err != nil {
					errs <- err
				}
				if _, err := s.Accounts(ctx); err != nil {
					errs <- err
				}
				if _, err := s.UsersNamed(ctx, a.PublicKey, "u1"); err != nil {
					errs <- err
				}
				if i == 4 {
					if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := dumpOf(t, s)
	if len(want.Accounts) != workers*4 {
		t.Fatalf("%d accounts, want %d", len(want.Accounts), workers*4)
	}
	for _, a := range want.Accounts {
		if n := len(want.Users[a.PublicKey]); n != 6 {
			t.Errorf("account %s has %d users, want 6", a.Name, n)
		}
	}
	closeStore(t, s)
	s = open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
}

// TestLazyUserReachesDisk: a user added without waiting is applied and
// returns while the disk is stuck, and is on disk, as a read-only check of
// the files sees it, within the lazy delay once the disk moves; a durable
// one waits for its flush.
func TestLazyUserReachesDisk(t *testing.T) {
	ctx := context.Background()
	var stuck sync.RWMutex // flushes take it for reading; the test holds it to stop them
	orig := syncFile
	syncFile = func(f *os.File, dataOnly bool) error {
		stuck.RLock()
		defer stuck.RUnlock()
		return orig(f, dataOnly)
	}
	t.Cleanup(func() { syncFile = orig })
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := newAccount(t, "a")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	onDisk := func() int {
		rep, err := Check(dir, nil)
		if err != nil || rep.Damaged() {
			t.Fatalf("Check: %v %+v", err, rep.Damage)
		}
		return rep.Users
	}

	stuck.Lock()
	lazy := newUser(t, a.PublicKey, "lazy", 1)
	returned := make(chan error, 1)
	go func() { returned <- s.AddUser(ctx, lazy, false) }()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a lazy AddUser waits for the disk")
	}
	if got, err := s.User(ctx, lazy.PublicKey); err != nil || !got.Equal(lazy) {
		t.Fatalf("a lazy user is not visible at once: %+v, %v", got, err)
	}
	durable := make(chan error, 1)
	go func() { durable <- s.AddUser(ctx, newUser(t, a.PublicKey, "durable", 2), true) }()
	select {
	case err := <-durable:
		t.Fatalf("a durable AddUser returned while the disk was stuck: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	stuck.Unlock()
	if err := <-durable; err != nil {
		t.Fatal(err)
	}
	if n := onDisk(); n != 2 {
		t.Fatalf("%d users on disk when the durable AddUser returned, want 2", n)
	}

	// Unstuck, a lazy record reaches the disk within about the lazy delay.
	start := time.Now()
	if err := s.AddUser(ctx, newUser(t, a.PublicKey, "lazy2", 3), false); err != nil {
		t.Fatal(err)
	}
	for onDisk() != 3 {
		if time.Since(start) > 2*time.Second {
			t.Fatal("a lazy user record did not reach the disk within two seconds")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("lazy user record on disk after %v (lazy delay %v, plus a check of the files)", time.Since(start), lazyDelay)
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fill(t, open(t, dir, Options{}), "a")
	s := open(t, dir, Options{}) // compacts
	want := map[string]os.FileMode{".": 0o700 | os.ModeDir, snapshotFile: 0o600, journalFile: 0o600, lockFile: 0o600}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			t.Errorf("unexpected file %s in the store directory", e.Name())
		}
	}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s has mode %v, want %v", name, st.Mode(), mode)
		}
	}
	closeStore(t, s)
}

// TestCompactionLogged: a compaction is logged with how long it took:
// changes wait while it runs, and the time tells an operator a compaction
// from a stall (at 10,000 accounts and 50,000 users it took 0.4 s here).
func TestCompactionLogged(t *testing.T) {
	log, logs := newLog()
	s := open(t, t.TempDir(), Options{CompactBytes: 8 << 10, Logger: log})
	ctx := context.Background()
	for i := 0; !strings.Contains(logs.String(), "filestore compacted the journal"); i++ {
		if i == 100 {
			t.Fatalf("no compaction logged after 100 accounts past an 8 KiB journal: %s", logs.String())
		}
		if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprintf("a%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if !regexp.MustCompile(`filestore compacted the journal".*"took":\d`).MatchString(logs.String()) {
		t.Errorf("the compaction's log does not say how long it took: %s", logs.String())
	}
}

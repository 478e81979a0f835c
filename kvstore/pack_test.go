package kvstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// addAsync adds users in the background and waits until their packs are
// stored.
func addAsync(t *testing.T, s *Store, users ...provision.User) {
	t.Helper()
	ctx := bg(t)
	for _, u := range users {
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "the records are stored", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.pending) == 0
	})
}

// packKeys lists the upack. keys the bucket holds.
func packKeys(ctx context.Context, t *testing.T, s *Store) []string {
	t.Helper()
	l, err := s.kv.ListKeysFiltered(ctx, packPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys
}

// writePackAs stores a pack as another instance would, bypassing s.
func writePackAs(ctx context.Context, t *testing.T, s *Store, key string, users ...provision.User) uint64 {
	t.Helper()
	rev, err := s.kv.Create(ctx, key, mustJSON(t, packRecord{Users: users}))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// shows reports whether a store shows a user, and which record.
func shows(s *Store, u provision.User) bool {
	got, err := s.User(context.Background(), u.PublicKey)
	return err == nil && got.Equal(u)
}

// TestPackedUsersRemoved: users of two accounts in one pack; removing one
// account removes its users from every mirror and from what a new store
// shows, and keeps the other's; removing the other removes the pack.
func TestPackedUsersRemoved(t *testing.T) {
	d, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, b := newAccount(t, "first"), newAccount(t, "second")
	for _, acct := range []provision.Account{a, b} {
		if _, err := sa.CreateAccount(ctx, acct); err != nil {
			t.Fatal(err)
		}
	}
	// One pack: the batch loop is held while both accounts' users queue.
	gate := make(chan struct{})
	hold := func() { <-gate }
	sa.gatherHook.Store(&hold)
	ua := []provision.User{newUser(t, a.PublicKey, "a1"), newUser(t, a.PublicKey, "a2")}
	ub := []provision.User{newUser(t, b.PublicKey, "b1")}
	for _, u := range append(append([]provision.User{}, ua...), ub...) {
		if err := sa.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	addAsync(t, sa)
	if keys := packKeys(ctx, t, sa); len(keys) != 1 {
		t.Fatalf("%d packs, want the three records in one", len(keys))
	}
	eventually(t, 5*time.Second, "b shows every user", func() bool {
		return shows(sb, ua[0]) && shows(sb, ua[1]) && shows(sb, ub[0])
	})

	if err := sb.RemoveAccount(ctx, a.PublicKey, mirrorRevision(sb, a.PublicKey)); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{sa, sb} {
		eventually(t, 5*time.Second, "the removed account's users are gone, the other's kept", func() bool {
			return !shows(s, ua[0]) && !shows(s, ua[1]) && shows(s, ub[0])
		})
	}
	if keys := packKeys(ctx, t, sa); len(keys) != 1 {
		t.Fatalf("%d packs after the first removal, want the pack kept for the other account's user", len(keys))
	}
	for _, u := range ua {
		if _, err := bucketUser(ctx, sa, u.PublicKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("a removed user in the bucket: %v", err)
		}
	}
	fresh := openStore(t, d.connect(t, d.svcCreds), Options{Seal: sa.opts.Seal, Instance: "fresh"})
	if got, err := fresh.Users(ctx, b.PublicKey); err != nil || len(got) != 1 || !got[0].Equal(ub[0]) {
		t.Fatalf("a new store lists %v, %v; want the other account's user", got, err)
	}
	if _, err := fresh.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the removed account in a new store: %v", err)
	}
	if _, err := fresh.User(ctx, ua[0].PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("a removed user in a new store: %v", err)
	}

	if err := sa.RemoveAccount(ctx, b.PublicKey, mirrorRevision(sa, b.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if keys := packKeys(ctx, t, sa); len(keys) != 0 {
		t.Fatalf("packs %v left once none of their users is shown", keys)
	}
	for _, s := range []*Store{sa, sb, fresh} {
		eventually(t, 5*time.Second, "no user shown", func() bool { return !shows(s, ub[0]) })
	}
}

// TestPackWriteFails: a pack that is not stored is written again record
// by record, and the users end up stored with a key each.
func TestPackWriteFails(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "failing")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	fail := func(string) error { return jetstream.ErrNoStreamResponse }
	s.packHook.Store(&fail)
	users := []provision.User{newUser(t, a.PublicKey, "x"), newUser(t, a.PublicKey, "y")}
	addAsync(t, s, users...)
	if keys := packKeys(ctx, t, s); len(keys) != 0 {
		t.Fatalf("packs %v written though the hook failed them", keys)
	}
	for _, u := range users {
		e, err := s.kv.Get(ctx, userKey(u.PublicKey))
		if err != nil {
			t.Fatalf("user %s: %v, want its own record", u.PublicKey, err)
		}
		if got, err := decodeUser(e.Key(), e.Value()); err != nil || !got.Equal(u) {
			t.Fatalf("user %s: %v %v", u.PublicKey, got, err)
		}
	}
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: opts.Seal, Instance: "two"})
	if got, err := s2.Users(ctx, a.PublicKey); err != nil || len(got) != 2 {
		t.Fatalf("a new store lists %v, %v", got, err)
	}
}

// TestPackAndOwnRecord: a pack whose answer was lost, stored after all,
// and the same users' records written one by one: every store shows each
// user once, a removal removes both, and the pack then goes.
func TestPackAndOwnRecord(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "twice-stored")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u1, u2 := newUser(t, a.PublicKey, "one"), newUser(t, a.PublicKey, "two")
	writePackAs(ctx, t, s, packPrefix+"lost", u1, u2)
	if _, err := s.kv.Create(ctx, userKey(u1.PublicKey), mustJSON(t, u1)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both users shown", func() bool { return shows(s, u1) && shows(s, u2) })
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: opts.Seal, Instance: "two"})
	for _, st := range []*Store{s, s2} {
		got, err := st.Users(ctx, a.PublicKey)
		if err != nil || len(got) != 2 {
			t.Fatalf("lists %v, %v; want each user once", got, err)
		}
	}
	if err := s2.RemoveAccount(ctx, a.PublicKey, mirrorRevision(s2, a.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if keys := packKeys(ctx, t, s); len(keys) != 0 {
		t.Fatalf("packs %v left after the removal", keys)
	}
	for _, u := range []provision.User{u1, u2} {
		if _, err := bucketUser(ctx, s, u.PublicKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("user %s in the bucket after the removal: %v", u.PublicKey, err)
		}
		eventually(t, 5*time.Second, "the user gone from the other mirror", func() bool { return !shows(s, u) })
	}
}

// TestPackStray: a pack another instance stored after an account's
// removal holds a user of it; every instance removes that user as the
// pack arrives (a delete marker at its key), and keeps the pack's other
// users.
func TestPackStray(t *testing.T) {
	d, sa, sb, logA, logB := pair(t)
	ctx := bg(t)
	gone, kept := newAccount(t, "gone"), newAccount(t, "kept")
	rev, err := sa.CreateAccount(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CreateAccount(ctx, kept); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees the account", func() bool { return mirrorRevision(sb, gone.PublicKey) == rev })
	if err := sa.RemoveAccount(ctx, gone.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees the removal", func() bool { return mirrorRevision(sb, gone.PublicKey) == 0 })
	stray, live := newUser(t, gone.PublicKey, "late"), newUser(t, kept.PublicKey, "on-time")
	writePackAs(ctx, t, sb, packPrefix+"late", stray, live)
	eventually(t, 10*time.Second, "the stray's key has a delete marker", func() bool {
		m, err := sa.stream.GetLastMsgForSubject(ctx, sa.subject+userKey(stray.PublicKey))
		return err == nil && m.Header.Get(kvOperationHeader) == kvDelete
	})
	for _, s := range []*Store{sa, sb} {
		eventually(t, 5*time.Second, "the stray gone, the other user shown", func() bool { return !shows(s, stray) && shows(s, live) })
	}
	if !strings.Contains(logA.String()+logB.String(), "removed the record of a user whose account was removed") {
		t.Error("no instance logged the removal")
	}
	fresh := openStore(t, d.connect(t, d.svcCreds), Options{Seal: sa.opts.Seal, Instance: "fresh"})
	if shows(fresh, stray) || !shows(fresh, live) {
		t.Fatal("a new store shows the stray, or not the other user")
	}
	// A pack of strays only is removed with them, not left to a restart.
	writePackAs(ctx, t, sb, packPrefix+"strays-only", newUser(t, gone.PublicKey, "later"))
	eventually(t, 10*time.Second, "the pack of strays removed", func() bool {
		for _, k := range packKeys(ctx, t, sa) {
			if k == packPrefix+"strays-only" {
				return false
			}
		}
		return true
	})
	if keys := packKeys(ctx, t, sa); len(keys) != 1 {
		t.Fatalf("packs %v, want the one with a live user", keys)
	}
}

// TestPackSweep: a pack none of whose users is shown (every one removed at
// its key) is removed by the next open's sweep.
func TestPackSweep(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "swept")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "u")
	writePackAs(ctx, t, s, packPrefix+"empty", u)
	if err := s.kv.Delete(ctx, userKey(u.PublicKey)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the user gone", func() bool { return !shows(s, u) })
	if keys := packKeys(ctx, t, s); len(keys) != 1 {
		t.Fatalf("%d packs before the sweep", len(keys))
	}
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: opts.Seal, Instance: "two"})
	if keys := packKeys(ctx, t, s2); len(keys) != 0 {
		t.Fatalf("packs %v after a new store's sweep", keys)
	}
	if _, err := s2.Account(ctx, a.PublicKey); err != nil {
		t.Fatalf("the account after the sweep: %v", err)
	}
}

// TestKeyInTwoPacks: a key in two packs with different records (never so
// for keys the service makes): every store shows the record of the pack
// stored first, whichever arrives first, and logs the other as dropped.
func TestKeyInTwoPacks(t *testing.T) {
	d, sa, sb, logA, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "dup")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	first := newUser(t, a.PublicKey, "first")
	second := first
	second.Name = "second"
	// sa adds second in the background and its pack waits; meanwhile
	// another instance's pack with first is stored.
	release := make(chan struct{})
	var storedFirst bool
	hook := func(string) error {
		if !storedFirst {
			storedFirst = true
			// The batch loop's goroutine: t.Error, not t.Fatal.
			if _, err := sb.kv.Create(ctx, packPrefix+"other", mustJSON(t, packRecord{Users: []provision.User{first}})); err != nil {
				t.Error(err)
			}
			<-release
		}
		return nil
	}
	sa.packHook.Store(&hook)
	if err := sa.AddUser(ctx, second, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "sa shows the record stored first", func() bool { return shows(sa, first) })
	close(release)
	addAsync(t, sa)
	for _, s := range []*Store{sa, sb} {
		eventually(t, 5*time.Second, "the record stored first shown", func() bool { return shows(s, first) })
	}
	fresh := openStore(t, d.connect(t, d.svcCreds), Options{Seal: sa.opts.Seal, Instance: "fresh"})
	if !shows(fresh, first) {
		t.Fatal("a new store does not show the record stored first")
	}
	if !strings.Contains(logA.String(), "user key was issued twice") {
		t.Error("the dropped record was not logged")
	}
}

// stallWatcher makes s's watcher stop applying entries until the returned
// func is called: it brings a stray user record, and then blocks handing it
// to the stray loop (s.smu held). sa is another store on the bucket.
func stallWatcher(t *testing.T, sa, s *Store) func() {
	t.Helper()
	ctx := bg(t)
	gone := newAccount(t, "stall")
	rev, err := sa.CreateAccount(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "s sees the account", func() bool { return mirrorRevision(s, gone.PublicKey) == rev })
	if err := sa.RemoveAccount(ctx, gone.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "s sees the removal", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.m.accounts[gone.PublicKey] == nil && s.m.revs[accountKey(gone.PublicKey)] > 0
	})
	// sa's own watcher removes the stray too: when it does so before s's
	// watcher reaches the record, the bucket (history 1) no longer holds
	// it, and s sees only the delete marker and does not stall. Then a
	// new stray is tried.
	for attempt := 0; ; attempt++ {
		s.smu.Lock()
		stray := newUser(t, gone.PublicKey, "stray")
		rev, err := sa.kv.Create(ctx, userKey(stray.PublicKey), mustJSON(t, stray))
		if err != nil {
			s.smu.Unlock()
			t.Fatal(err)
		}
		var seen uint64
		eventually(t, 5*time.Second, "s's watcher applied the stray", func() bool {
			s.mu.RLock()
			defer s.mu.RUnlock()
			seen = s.m.revs[userKey(stray.PublicKey)]
			return seen > 0
		})
		if seen == rev {
			break // the record itself: the watcher stalls handing it over
		}
		s.smu.Unlock()
		if attempt == 10 {
			t.Fatal("s's watcher never saw a stray record before its removal")
		}
	}
	// Released at the test's end too: a failure before the test releases
	// it would otherwise hang the store's Close until the test timeout.
	release := sync.OnceFunc(s.smu.Unlock)
	t.Cleanup(release)
	return release
}

// TestPackUnseenByTheMirror: a user stored in a pack that another
// instance's watcher has not brought yet (stalled here) is found by that
// instance's read of the bucket, and a durable add of the same key there
// is refused: the key is not issued twice, and the record stays. (Found by
// review: both read only the user. key.)
func TestPackUnseenByTheMirror(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, other := newAccount(t, "owner"), newAccount(t, "other")
	for _, acct := range []provision.Account{a, other} {
		if _, err := sa.CreateAccount(ctx, acct); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "b sees it", func() bool { return mirrorRevision(sb, acct.PublicKey) != 0 })
	}
	release := stallWatcher(t, sa, sb)
	u := newUser(t, a.PublicKey, "issued")
	addAsync(t, sa, u)
	if len(packKeys(ctx, t, sa)) == 0 {
		t.Fatal("the record is not in a pack")
	}
	if got, err := sb.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
		t.Errorf("b reads the stored user as %+v, %v", got, err)
	}
	second := newUser(t, other.PublicKey, "again")
	second.PublicKey = u.PublicKey
	if err := sb.AddUser(ctx, second, true); !errors.Is(err, provision.ErrConflict) {
		t.Errorf("a durable add of a key stored in a pack: %v, want ErrConflict", err)
	}
	release()
	for _, s := range []*Store{sa, sb} {
		eventually(t, 5*time.Second, "the stored record shown", func() bool { return shows(s, u) })
	}
}

// TestPackRemovalDuringOutage: the server goes down after an account's
// users and record are removed, before the pack that held its users is, and
// the instance dies before it is back (its connection closed: what it
// buffered while reconnecting is never sent). The removal was reported done
// (the account and its users are shown nowhere); the pack is left, holding
// only removed users, and the next store to open removes it.
func TestPackRemovalDuringOutage(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	logger, logs := newLog(t)
	opts := Options{Seal: key, Instance: "one", Timeout: 500 * time.Millisecond, Logger: logger}
	nc := d.connect(t, d.svcCreds)
	s := openStore(t, nc, opts)
	ctx := bg(t)
	a := newAccount(t, "packed-then-removed")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var users []provision.User
	for range 20 {
		users = append(users, newUser(t, a.PublicKey, "u"))
	}
	addAsync(t, s, users...)
	packs := packKeys(ctx, t, s)
	if len(packs) == 0 {
		t.Fatal("no pack: the background records were not packed")
	}
	s.fault = func(p string) error {
		if p == "remove: packs to remove" {
			d.nodes[0].emb.Stop()
		}
		return nil
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatalf("RemoveAccount with the server gone before the packs: %v, want it done", err)
	}
	if !strings.Contains(logs.String(), "cannot remove a pack") {
		t.Fatalf("the pack left behind is not logged:\n%s", logs)
	}
	nc.Close()
	d.restart(t, "n1")

	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	eventually(t, 20*time.Second, "the bucket readable again", func() bool {
		kv, err := js.KeyValue(ctx, "provisioner")
		if err != nil {
			return false
		}
		l, err := kv.ListKeysFiltered(ctx, packPrefix+">")
		if err != nil {
			return false
		}
		left = left[:0]
		for k := range l.Keys() {
			left = append(left, k)
		}
		return true
	})
	// The outage leaves the pack, unless the watcher's removal of the
	// account's stray user records (strays.go), which removes the packs
	// it empties as RemoveAccount does, got it before the server went
	// (CI, once: "packs [] after the restart"). Either way the new
	// store's open below must leave none, and no user.
	if len(left) > len(packs) {
		t.Fatalf("packs %v after the restart, want at most the %d the outage left", left, len(packs))
	}
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "two"})
	if keys := packKeys(ctx, t, s2); len(keys) != 0 {
		t.Fatalf("packs %v after a new store's open, want them removed", keys)
	}
	if _, err := s2.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the removed account in a new store: %v, want ErrNotFound", err)
	}
	for _, u := range users {
		if _, err := s2.User(ctx, u.PublicKey); !errors.Is(err, provision.ErrNotFound) {
			t.Fatalf("user %s of the removed account in a new store: %v, want ErrNotFound", u.PublicKey, err)
		}
		if _, err := bucketUser(ctx, s2, u.PublicKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("user %s in the bucket: %v, want none", u.PublicKey, err)
		}
	}
}

// TestAddDuringRemove: a user added in the background on the instance that
// is removing its account (after RemoveAccount listed the account's users)
// is stored in a pack after the account's delete marker. The instance
// applies its own pack itself, and its watcher then skips the pack as
// seen: the pack's write must find the stray, or the user of the removed
// account stays shown, and in the bucket, until the next open's sweep.
func TestAddDuringRemove(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "removed")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	u := newUser(t, a.PublicKey, "late")
	added := false
	s.fault = func(p string) error {
		if p == "remove: record read" && !added {
			added = true
			// A user.create that checked the account before its removal.
			if err := s.AddUser(ctx, u, false); err != nil {
				t.Errorf("AddUser: %v", err)
			}
		}
		return nil
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	s.fault = nil
	eventually(t, 5*time.Second, "the watcher applied the account's delete marker", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.m.revs[accountKey(a.PublicKey)] > rev
	})
	// The watcher lags (stalled here) while the pack is written.
	release := stallWatcher(t, s, s)
	close(gate)
	eventually(t, 5*time.Second, "the pack stored and applied by its writer", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		for k := range s.m.packs {
			if s.m.revs[k] > 0 {
				return true
			}
		}
		return false
	})
	release()
	addAsync(t, s)
	eventually(t, 5*time.Second, "the watcher caught up", func() bool {
		info, err := s.stream.Info(ctx)
		if err != nil {
			return false
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.m.watched >= info.State.LastSeq
	})
	if _, err := s.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("account: %v, want ErrNotFound", err)
	}
	eventually(t, 5*time.Second, "the user of the removed account gone from the mirror and the bucket", func() bool {
		_, err := bucketUser(ctx, s, u.PublicKey)
		return !shows(s, u) && errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// TestReadUserRemovedAtItsKey: b's watcher lags (stalled) behind a pack and
// the removal of one of its users (its account removed, the pack kept for
// another account's user). b.User reads the bucket: the delete marker at
// the user's key must win over the pack, as it does in the mirror.
func TestReadUserRemovedAtItsKey(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, other := newAccount(t, "removed"), newAccount(t, "kept")
	for _, acct := range []provision.Account{a, other} {
		if _, err := sa.CreateAccount(ctx, acct); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "b sees it", func() bool { return mirrorRevision(sb, acct.PublicKey) != 0 })
	}
	release := stallWatcher(t, sa, sb)
	defer release()
	gate := make(chan struct{})
	hold := func() { <-gate }
	sa.gatherHook.Store(&hold)
	u, v := newUser(t, a.PublicKey, "u"), newUser(t, other.PublicKey, "v")
	for _, x := range []provision.User{u, v} {
		if err := sa.AddUser(ctx, x, false); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	addAsync(t, sa)
	if err := sa.RemoveAccount(ctx, a.PublicKey, mirrorRevision(sa, a.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := bucketUser(ctx, sa, u.PublicKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("bucket: %v, want removed", err)
	}
	if got, err := sb.User(ctx, u.PublicKey); err == nil {
		t.Fatalf("b reads a user removed at its own key from the bucket: %+v", got)
	}
}

// TestDurableAddsBehindAStalledWatcher: while an instance's watcher is
// stalled (after a failover it can be for tens of seconds), its durable
// adds read the packs the watcher has not brought, and each pack is read
// once, not by every add. Reading every pack since the stall again on each
// add made each add slower than the last until none finished within its
// timeout (TestClusterFailover, in CI: durable adds failed for 20 s after
// the kill while updates had resumed). Counted in the messages b's
// connection sends.
func TestDurableAddsBehindAStalledWatcher(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "packed")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees it", func() bool { return mirrorRevision(sb, a.PublicKey) != 0 })
	release := stallWatcher(t, sa, sb)
	defer release()
	const packs = 60
	for range packs {
		addAsync(t, sa, newUser(t, a.PublicKey, "async")) // one pack each: each waits for its store
	}
	if n := len(packKeys(ctx, t, sa)); n < packs {
		t.Fatalf("%d packs, want %d", n, packs)
	}
	const adds = 20
	before := sb.nc.Stats().OutMsgs
	for range adds {
		if err := sb.AddUser(ctx, newUser(t, a.PublicKey, "durable"), true); err != nil {
			t.Fatal(err)
		}
	}
	sent := sb.nc.Stats().OutMsgs - before
	// Each add: its write, and a read finding no new pack. The packs are
	// read once (and once more by the watchdog's catch-up, if it ran).
	if limit := uint64(2*packs + 5*adds); sent > limit {
		t.Errorf("%d durable adds behind %d packs sent %d messages, want at most %d: the packs were read again by each add", adds, packs, sent, limit)
	}
	t.Logf("%d durable adds behind %d unwatched packs sent %d messages", adds, packs, sent)
}

// TestRetriedRecordAfterItsRemoval: a pack whose answer was lost was stored
// after all; before its writer writes its users again one by one, another
// instance removes their account (delete markers at the users' keys, the
// pack removed) and stops. The writer's retry creates the user's record
// over its delete marker: a record of an account that is gone, which the
// writer must remove as a stray as the watcher would, not take for seen.
func TestRetriedRecordAfterItsRemoval(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "gone-meanwhile")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "late")
	b := openStore(t, d.connect(t, d.svcCreds), Options{Seal: opts.Seal, Instance: "two"})
	once := false
	var release func()
	lost := func(key string) error {
		if once {
			return nil
		}
		once = true
		// Stored, its answer lost.
		writePackAs(ctx, t, s, key, u)
		eventually(t, 5*time.Second, "b shows the packed user", func() bool { return shows(b, u) })
		if err := b.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
			t.Errorf("remove: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close b: %v", err)
		}
		eventually(t, 5*time.Second, "the writer's watcher applied the removal", func() bool {
			s.mu.RLock()
			defer s.mu.RUnlock()
			return s.m.revs[userKey(u.PublicKey)] > 0 && s.m.revs[accountKey(a.PublicKey)] > rev
		})
		// The writer's watcher is held, so that the retry's answer comes
		// before the watcher brings the record (as it often does).
		release = stallWatcher(t, s, s)
		return jetstream.ErrNoStreamResponse
	}
	s.packHook.Store(&lost)
	addAsync(t, s, u)
	time.Sleep(50 * time.Millisecond)
	release()
	eventually(t, 10*time.Second, "the record of the removed account's user gone from the bucket", func() bool {
		_, err := bucketUser(ctx, s, u.PublicKey)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	// The mirror drops it when the watcher brings the removal.
	eventually(t, 5*time.Second, "the user of a removed account no longer shown", func() bool { return !shows(s, u) })
}

// TestUserReadBehindManyPacksUnavailable: a read of a user the mirror does
// not hold reads the packs the watcher has not brought yet. When the bucket
// did not answer that read within the store's Timeout (here: a stalled
// watcher, and more packs than one Timeout reads), the bare context error
// came back, which the responder takes for the request's own deadline
// ("ran out of its time ... may have taken effect") instead of unavailable.
func TestUserReadBehindManyPacksUnavailable(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	sa := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "a"})
	sb := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "b", Timeout: 100 * time.Millisecond})
	ctx := bg(t)
	a := newAccount(t, "packed")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees it", func() bool { return mirrorRevision(sb, a.PublicKey) != 0 })
	release := stallWatcher(t, sa, sb)
	defer release()
	// 3000 writes one after another: 5 s alone, past 30 s (bg's) on a
	// loaded machine under -race.
	setup, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 3000 {
		u := newUser(t, a.PublicKey, "p")
		if _, err := sa.kv.Create(setup, fmt.Sprintf("%sp%d", packPrefix, i), mustJSON(t, packRecord{Users: []provision.User{u}})); err != nil {
			t.Fatal(err)
		}
	}
	_, err := sb.User(bg(t), newUser(t, a.PublicKey, "unknown").PublicKey)
	if errors.Is(err, provision.ErrNotFound) {
		// The user is unknown: not found is the answer of a read that
		// got through every pack in time (a fast machine). Checked for
		// nil, such a run failed the test as "not found, want
		// unavailable".
		t.Skip("the packs were read within the timeout")
	}
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("a user read whose pack read timed out: %v, want unavailable", err)
	}
}

package kvstore

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

var errCrash = errors.New("crash (test fault point)")

// crashAt makes the store stop a change at the named point, as a crash
// there would; run, when set, runs there first.
func crashAt(s *Store, point string, run func()) {
	s.fault = func(p string) error {
		if p != point {
			return nil
		}
		if run != nil {
			run()
		}
		return errCrash
	}
}

// takeOverAt makes sa's change, at the fault point claimed, wait while sb
// creates b, which takes the name over (sa's claim has no live record yet),
// and then crash at the point crash; "" crashes nowhere. b's create must
// succeed.
func takeOverAt(t *testing.T, sa, sb *Store, b provision.Account, claimed, crash string) {
	t.Helper()
	ctx := bg(t)
	sa.fault = func(p string) error {
		switch p {
		case claimed:
			if _, err := sb.CreateAccount(ctx, b); err != nil {
				t.Errorf("b's create: %v", err)
			}
		case crash:
			return errCrash
		}
		return nil
	}
}

// TestCreateCrashes puts a crash between the steps of CreateAccount.
func TestCreateCrashes(t *testing.T) {
	t.Run("after the name claim", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a := newAccount(t, "orphaned-name")
		crashAt(sa, "create: name claimed", nil)
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
			t.Fatalf("CreateAccount: %v, want the crash", err)
		}
		if e, err := sa.kv.Get(ctx, nameKey(a.Name)); err != nil || string(e.Value()) != a.PublicKey {
			t.Fatalf("the crash did not leave the name claimed: %v", err)
		}
		for _, s := range []*Store{sa, sb} {
			if _, err := s.AccountByName(ctx, a.Name); !errors.Is(err, provision.ErrNotFound) {
				t.Fatalf("AccountByName of a claim without account: %v", err)
			}
		}
		// The claim points to a missing account: the name is free.
		b := newAccount(t, "orphaned-name")
		if _, err := sb.CreateAccount(ctx, b); err != nil {
			t.Fatalf("create over a crashed claim: %v", err)
		}
		if got, err := sa.AccountByName(ctx, a.Name); err != nil || got.PublicKey != b.PublicKey {
			t.Fatalf("AccountByName = %v, %v", got.PublicKey, err)
		}
	})

	t.Run("after the record, before the fence", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a := newAccount(t, "half-done")
		crashAt(sa, "create: record written", nil)
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
			t.Fatalf("CreateAccount: %v, want the crash", err)
		}
		// Name and record agree: the create took effect.
		for _, s := range []*Store{sa, sb} {
			eventually(t, 5*time.Second, "the account is visible", func() bool {
				got, err := s.AccountByName(ctx, a.Name)
				return err == nil && got.PublicKey == a.PublicKey
			})
		}
		if _, err := sb.CreateAccount(ctx, newAccount(t, "half-done")); !errors.Is(err, provision.ErrConflict) {
			t.Fatalf("second create of the name: %v, want ErrConflict", err)
		}
	})

	t.Run("name taken over between claim and record", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, b := newAccount(t, "contested"), newAccount(t, "contested")
		// While a's claim waits for its record, b sees a claim without an
		// account and takes the name over.
		takeOverAt(t, sa, sb, b, "create: name claimed", "")
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, provision.ErrConflict) {
			t.Fatalf("a's create: %v, want ErrConflict (fenced out)", err)
		}
		if _, err := sa.kv.Get(ctx, accountKey(a.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("a's record after losing the name: %v, want removed", err)
		}
		for _, s := range []*Store{sa, sb} {
			eventually(t, 5*time.Second, "only b is shown", func() bool {
				all, err := s.Accounts(ctx)
				return err == nil && len(all) == 1 && all[0].PublicKey == b.PublicKey
			})
		}
	})

	t.Run("a take-over that crashed after voiding the record's key", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, b, c := newAccount(t, "voided"), newAccount(t, "voided"), newAccount(t, "voided")
		crashAt(sa, "create: name claimed", nil)
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
			t.Fatalf("a's create: %v, want the crash", err)
		}
		crashAt(sb, "claim: holder's record voided", nil)
		if _, err := sb.CreateAccount(ctx, b); !errors.Is(err, errCrash) {
			t.Fatalf("b's create: %v, want the crash", err)
		}
		// a's record key holds b's marker; the name still points to a.
		// That marker is as good as a void: c takes the name over.
		sb.fault = nil
		if _, err := sb.CreateAccount(ctx, c); err != nil {
			t.Fatalf("c's create: %v", err)
		}
		for _, s := range []*Store{sa, sb} {
			eventually(t, 5*time.Second, "c holds the name", func() bool {
				got, err := s.AccountByName(ctx, "voided")
				return err == nil && got.PublicKey == c.PublicKey
			})
		}
	})

	t.Run("taken over, then a crash before backing out", func(t *testing.T) {
		d, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, b := newAccount(t, "left-behind"), newAccount(t, "left-behind")
		takeOverAt(t, sa, sb, b, "create: name claimed", "create: record written")
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
			t.Fatalf("a's create: %v, want the crash", err)
		}
		// a's live record is in the bucket, but its name points to b: not
		// shown anywhere.
		if _, err := sa.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
			t.Fatalf("a's record: %v", err)
		}
		for _, s := range []*Store{sa, sb} {
			eventually(t, 5*time.Second, "a's record is not shown", func() bool {
				_, err := s.Account(ctx, a.PublicKey)
				all, _ := s.Accounts(ctx)
				return errors.Is(err, provision.ErrNotFound) && len(all) == 1 && all[0].PublicKey == b.PublicKey
			})
		}
		if err := sa.AddUser(ctx, newUser(t, a.PublicKey, "u"), true); !errors.Is(err, provision.ErrNotFound) {
			t.Fatalf("AddUser to a record that lost its name: %v", err)
		}
		// The next store to open removes it.
		sc := openStore(t, d.connect(t, d.svcCreds), sa.opts)
		eventually(t, 5*time.Second, "the record is removed", func() bool {
			_, err := sc.kv.Get(ctx, accountKey(a.PublicKey))
			return errors.Is(err, jetstream.ErrKeyNotFound)
		})
		if got, err := sc.AccountByName(ctx, "left-behind"); err != nil || got.PublicKey != b.PublicKey {
			t.Fatalf("after the sweep: %v, %v", got.PublicKey, err)
		}
	})
}

// TestRemoveCrash: a crash after the account's record is removed leaves
// its users' records, which the stray loop, brought the record's removal
// by the watcher, removes with the packs that held them.
func TestRemoveCrash(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "going")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var users []provision.User
	for range 300 {
		u := newUser(t, a.PublicKey, "u")
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	addAsync(t, s)
	if len(packKeys(ctx, t, s)) == 0 {
		t.Fatal("no pack: the background records were not packed")
	}
	crashAt(s, "remove: account removed", nil)
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); !errors.Is(err, errCrash) {
		t.Fatalf("RemoveAccount: %v, want the crash", err)
	}
	s.fault = nil
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the account after a remove that crashed after its record: %v", err)
	}
	// Nothing of it is left in the bucket, and a new store sees nothing.
	eventually(t, 10*time.Second, "the users and their packs are removed", func() bool {
		for _, u := range users {
			if _, err := s.kv.Get(ctx, userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
				return false
			}
		}
		return len(packKeys(ctx, t, s)) == 0
	})
	s2 := openStore(t, d.connect(t, d.svcCreds), opts)
	if all, _ := s2.Accounts(ctx); len(all) != 0 {
		t.Fatalf("accounts after remove: %v", all)
	}
}

// TestSweepOrphanUsers: user records of an account that is gone (an
// asynchronous write that landed after its account was removed) are
// removed by the next store to open.
func TestSweepOrphanUsers(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	u := newUser(t, newAccount(t, "gone").PublicKey, "u")
	data, _ := json.Marshal(u)
	if _, err := s.kv.Create(ctx, userKey(u.PublicKey), data); err != nil {
		t.Fatal(err)
	}
	openStore(t, d.connect(t, d.svcCreds), opts)
	if _, err := s.kv.Get(ctx, userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("orphan user record after open: %v", err)
	}
}

// TestCreateWritesTwice: a create of a new name writes the name entry and
// the record, and nothing after them: no fence.
func TestCreateWritesTwice(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "two-writes")
	before, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name, err := s.kv.Get(ctx, nameKey(a.Name))
	if err != nil {
		t.Fatal(err)
	}
	if n := after.State.LastSeq - before.State.LastSeq; n != 2 || name.Revision() != rev-1 {
		t.Fatalf("%d writes, name entry at %d, record at %d; want 2, the name just before the record", n, name.Revision(), rev)
	}
}

// TestStrayUserRecords: a user record of a removed account that another
// instance stores after the removal began (its mirror had not seen it yet)
// is removed by the instances' watchers as it arrives, not only at the
// next open. Without that, both records stay in the bucket.
func TestStrayUserRecords(t *testing.T) {
	gone := func(t *testing.T, s *Store, u provision.User) {
		t.Helper()
		ctx := bg(t)
		eventually(t, 10*time.Second, "the stray record removed from the bucket", func() bool {
			_, err := s.kv.Get(ctx, userKey(u.PublicKey))
			return errors.Is(err, jetstream.ErrKeyNotFound)
		})
		eventually(t, 5*time.Second, "the stray user gone from the mirror", func() bool {
			_, err := s.User(ctx, u.PublicKey)
			return errors.Is(err, provision.ErrNotFound)
		})
	}
	t.Run("stored after the account's removal", func(t *testing.T) {
		_, sa, sb, logA, logB := pair(t)
		ctx := bg(t)
		a := newAccount(t, "removed")
		rev, err := sa.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "b sees the account", func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
		if err := sa.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
			t.Fatal(err)
		}
		// The record b had on its way lands now.
		u := newUser(t, a.PublicKey, "late")
		data, _ := json.Marshal(u)
		if _, err := sb.kv.Create(ctx, userKey(u.PublicKey), data); err != nil {
			t.Fatal(err)
		}
		gone(t, sa, u)
		gone(t, sb, u)
		// Logged once the delete is answered: the mirrors may show it
		// first.
		eventually(t, 5*time.Second, "an instance logs the removal", func() bool {
			return strings.Contains(logA.String()+logB.String(), "removed the record of a user whose account was removed")
		})
	})
	t.Run("stored between the removal's read and the account's removal", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a := newAccount(t, "removing")
		rev, err := sa.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "b sees the account", func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
		u := newUser(t, a.PublicKey, "between")
		sa.fault = func(p string) error {
			if p == "remove: record read" {
				// b still holds the account live: it stores the user.
				if err := sb.AddUser(ctx, u, true); err != nil {
					t.Errorf("b's AddUser during the removal: %v", err)
				}
			}
			return nil
		}
		if err := sa.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
			t.Fatal(err)
		}
		gone(t, sa, u)
		gone(t, sb, u)
	})
}

// TestReviveCrashes puts a crash, and another instance's create of the
// same name, between the steps of making a tombstone live again (a delete
// put back after its push failed): claim the name, write the record,
// fence the name.
func TestReviveCrashes(t *testing.T) {
	// disabled creates a live account through sa and disables it: the
	// tombstone a revive starts from, and the live account to write back.
	// It returns once each of others shows the tombstone: a create there
	// of the same name, checked against a mirror that still held the live
	// account, was refused (the name taken) under load.
	disabled := func(t *testing.T, sa *Store, name string, others ...*Store) (provision.Account, uint64) {
		ctx := bg(t)
		a := newAccount(t, name)
		rev, err := sa.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if rev, err = sa.UpdateAccount(ctx, tombstone(t, a, provision.PhaseDisabled, time.Now().Unix()), rev); err != nil {
			t.Fatal(err)
		}
		for _, s := range others {
			eventually(t, 5*time.Second, "the other store shows the tombstone", func() bool {
				got, err := s.Account(ctx, a.PublicKey)
				return err == nil && got.Phase == provision.PhaseDisabled
			})
		}
		return a, rev
	}
	// stillTombstone checks that both stores show a as disabled and b,
	// when given, under the name.
	stillTombstone := func(t *testing.T, a provision.Account, b *provision.Account, stores ...*Store) {
		ctx := bg(t)
		for _, s := range stores {
			eventually(t, 5*time.Second, "the account is still a tombstone", func() bool {
				got, err := s.Account(ctx, a.PublicKey)
				if err != nil || got.Phase != provision.PhaseDisabled {
					return false
				}
				if b == nil {
					return true
				}
				holder, err := s.AccountByName(ctx, a.Name)
				return err == nil && holder.PublicKey == b.PublicKey
			})
		}
	}

	t.Run("crash after the name claim", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, rev := disabled(t, sa, "revived")
		crashAt(sa, "revive: name claimed", nil)
		if _, err := sa.UpdateAccount(ctx, a, rev); !errors.Is(err, errCrash) {
			t.Fatalf("revive: %v, want the crash", err)
		}
		stillTombstone(t, a, nil, sa, sb)
		// The claim points to an account that is not live: the name is
		// free for another create.
		b := newAccount(t, "revived")
		if _, err := sb.CreateAccount(ctx, b); err != nil {
			t.Fatalf("create over a crashed revive's claim: %v", err)
		}
		stillTombstone(t, a, &b, sa, sb)
	})

	t.Run("name taken over between claim and record", func(t *testing.T) {
		_, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, rev := disabled(t, sa, "contested-revive", sb)
		b := newAccount(t, "contested-revive")
		// While a's claim waits for its record, b sees a claim held by a
		// tombstone and takes the name over.
		takeOverAt(t, sa, sb, b, "revive: name claimed", "")
		if _, err := sa.UpdateAccount(ctx, a, rev); !errors.Is(err, provision.ErrConflict) {
			t.Fatalf("revive: %v, want ErrConflict (fenced out)", err)
		}
		// a's record went back to the tombstone, and b has the name.
		stillTombstone(t, a, &b, sa, sb)
		e, err := sa.kv.Get(ctx, accountKey(a.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if live, err := liveOf(e.Value()); err != nil || live {
			t.Fatalf("a's record in the bucket: live %v (%v), want the tombstone back", live, err)
		}
	})

	t.Run("name taken over, then a crash before the tombstone is back", func(t *testing.T) {
		d, sa, sb, _, _ := pair(t)
		ctx := bg(t)
		a, rev := disabled(t, sa, "lost-revive", sb)
		tomb, err := sa.Account(ctx, a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		b := newAccount(t, "lost-revive")
		takeOverAt(t, sa, sb, b, "revive: name claimed", "revive: fenced out")
		if _, err := sa.UpdateAccount(ctx, a, rev); !errors.Is(err, errCrash) {
			t.Fatalf("revive: %v, want the crash", err)
		}
		// The live record a wrote is hidden (b has the name); the next
		// store to open writes the tombstone back instead of removing it,
		// keeping the account's keys.
		sc := openStore(t, d.connect(t, d.svcCreds), sb.opts)
		stillTombstone(t, a, &b, sc, sb)
		got, err := sc.Account(ctx, a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		got.Revision, tomb.Revision = 0, 0
		if !reflect.DeepEqual(got, tomb) {
			t.Errorf("the tombstone written back:\n%+v\nwant the one the revive replaced:\n%+v", got, tomb)
		}
	})
}

// TestStraysNeedASeenRemoval: a user record whose account the mirror has
// never held is not a stray: a resumed watcher skips entries replaced
// since, so a user's record can arrive before the later revision of its
// account record. Only an account the mirror saw removed makes one.
func TestStraysNeedASeenRemoval(t *testing.T) {
	m := newMirror()
	a := newAccount(t, "later")
	u := newUser(t, a.PublicKey, "early")
	put := change{key: userKey(u.PublicKey), rev: 5, user: &u}
	if !m.apply(put) {
		t.Fatal("the user record was not applied")
	}
	if got := m.straysAfter(put); len(got) != 0 {
		t.Fatalf("strays %v of an account never seen", got)
	}
	m.apply(change{key: accountKey(a.PublicKey), rev: 9, acct: &accountEntry{a: a}})
	del := change{key: accountKey(a.PublicKey), rev: 12, del: true}
	m.apply(del)
	if got := m.straysAfter(del); len(got) != 1 || got[0] != (stray{userKey(u.PublicKey), 5, a.PublicKey}) {
		t.Fatalf("strays after the account's removal: %v, want the user's record at 5", got)
	}
	u2 := newUser(t, a.PublicKey, "late")
	late := change{key: userKey(u2.PublicKey), rev: 14, user: &u2}
	m.apply(late)
	if got := m.straysAfter(late); len(got) != 1 || got[0] != (stray{userKey(u2.PublicKey), 14, a.PublicKey}) {
		t.Fatalf("strays after a record stored after the removal: %v", got)
	}
}

// TestStraysOfAnAccountTheMirrorMissed: an account whose record was
// created over a delete marker (here a take-over's void, which the account
// survived through its fence) is missed by a watcher that resumes after the
// marker once the account is updated: the record's first revision is gone.
// That watcher sees the account's users arrive with the account removed,
// as far as it knows; the bucket says otherwise, and the users stay.
func TestStraysOfAnAccountTheMirrorMissed(t *testing.T) {
	d, sa, sb, _, _ := pair(t)
	lc, logC := newLog(t)
	sc := openStore(t, d.connect(t, d.svcCreds), Options{Seal: sa.opts.Seal, Instance: "c", Logger: lc})
	ctx := bg(t)
	a, b := newAccount(t, "won"), newAccount(t, "won")
	resumeA := make(chan struct{})
	aDone := make(chan error, 1)
	sa.fault = func(p string) error {
		if p == "create: name claimed" {
			<-resumeA
		}
		return nil
	}
	sb.fault = func(p string) error {
		if p != "claim: holder's record voided" {
			return nil
		}
		// c applies the void; then its watcher ends (as after an outage)
		// and cannot start again while the test holds c's lock.
		eventually(t, 5*time.Second, "c sees the void", func() bool {
			sc.mu.RLock()
			defer sc.mu.RUnlock()
			return sc.m.revs[accountKey(a.PublicKey)] > 0
		})
		sc.mu.Lock()
		sc.restartWatch <- struct{}{}
		time.Sleep(200 * time.Millisecond)
		// a goes on: its record over the void, and its fence wins.
		close(resumeA)
		if err := <-aDone; err != nil {
			t.Errorf("a's create: %v", err)
		}
		return nil
	}
	go func() { _, err := sa.CreateAccount(ctx, a); aDone <- err }()
	time.Sleep(100 * time.Millisecond)
	if _, err := sb.CreateAccount(ctx, b); !errors.Is(err, provision.ErrConflict) {
		sc.mu.Unlock()
		t.Fatalf("b's create: %v, want ErrConflict (a kept the name)", err)
	}
	got, err := sa.Account(ctx, a.PublicKey)
	if err != nil {
		sc.mu.Unlock()
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "legit")
	if err := sa.AddUser(ctx, u, true); err != nil {
		sc.mu.Unlock()
		t.Fatal(err)
	}
	got.JWT = accountJWTAt(t, got.PublicKey, got.Name, time.Now().Unix()+5)
	if _, err := sa.UpdateAccount(ctx, got, got.Revision); err != nil {
		sc.mu.Unlock()
		t.Fatal(err)
	}
	sc.mu.Unlock()
	eventually(t, 10*time.Second, "c's watcher is back and has the account", func() bool { return mirrorRevision(sc, a.PublicKey) > 0 })
	time.Sleep(500 * time.Millisecond) // the stray loop's turn
	if _, err := sa.kv.Get(ctx, userKey(u.PublicKey)); err != nil {
		t.Fatalf("the user of live account a in the bucket: %v (c removed it: %v)", err, strings.Contains(logC.String(), "removed the record of a user"))
	}
}

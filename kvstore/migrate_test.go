package kvstore

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestMigrate copies a store into the bucket. The source is a store of
// this package on another bucket with another seal key: a real
// provision.Store.
func TestMigrate(t *testing.T) {
	d := startDeployment(t, 1)
	srcKey, _ := newSealKey(t)
	dstKey, _ := newSealKey(t)
	src := openStore(t, d.connect(t, d.svcCreds), Options{Seal: srcKey, Bucket: "filestore", Instance: "src"})
	dst := openStore(t, d.connect(t, d.svcCreds), Options{Seal: dstKey, Instance: "dst"})
	ctx := bg(t)
	now := time.Now().Unix()

	var live []provision.Account
	for _, name := range []string{"alpha", "beta", "gamma", "dup"} {
		a := newAccount(t, name)
		a.JWT = accountJWTAt(t, a.PublicKey, name, now)
		rev, err := src.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		a.Revision = rev
		live = append(live, a)
		for i := range 3 {
			if err := src.AddUser(ctx, newUser(t, a.PublicKey, []string{"x", "y"}[i%2]), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Tombstones: one disabled, with a user from before; one deleted.
	for _, p := range []provision.Phase{provision.PhaseDisabled, provision.PhaseDeleted} {
		a := newAccount(t, "old-"+string(p))
		rev, err := src.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if err := src.AddUser(ctx, newUser(t, a.PublicKey, "before"), true); err != nil {
			t.Fatal(err)
		}
		if _, err := src.UpdateAccount(ctx, tombstone(t, a, p, now+1), rev); err != nil {
			t.Fatal(err)
		}
	}
	// The bucket already holds a different live account named "dup", and
	// a different record of one of alpha's user keys.
	dup := newAccount(t, "dup")
	if _, err := dst.CreateAccount(ctx, dup); err != nil {
		t.Fatal(err)
	}

	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first run: %+v", r)
	want := MigrateReport{Accounts: MigrateCounts{Copied: 5, Conflicts: 1}, Users: MigrateCounts{Copied: 11, Conflicts: 3}}
	if r.Accounts != want.Accounts || r.Users != want.Users {
		t.Fatalf("first run: %+v, want %+v", r, want)
	}
	if !strings.Contains(strings.Join(r.Conflicts, "\n"), live[3].PublicKey) {
		t.Fatalf("the conflict does not name the account: %v", r.Conflicts)
	}
	if len(r.BucketOnly) != 1 || !strings.Contains(r.BucketOnly[0], dup.PublicKey) {
		t.Errorf("bucket only %q, want the bucket's own dup", r.BucketOnly)
	}
	// The bucket holds what the source holds, but for "dup".
	srcAll, _ := src.Accounts(ctx)
	for _, a := range srcAll {
		if a.PublicKey == live[3].PublicKey {
			continue
		}
		got, err := dst.Account(ctx, a.PublicKey)
		if err != nil || !sameAccount(a, got) {
			t.Fatalf("account %s in the bucket: %v, %v", a.Name, got, err)
		}
		srcUsers, _ := src.Users(ctx, a.PublicKey)
		dstUsers, _ := dst.Users(ctx, a.PublicKey)
		if !reflect.DeepEqual(srcUsers, dstUsers) {
			t.Fatalf("users of %s: %v, want %v", a.Name, dstUsers, srcUsers)
		}
		// Sealed with the bucket's key, not the source's.
		e, err := dst.kv.Get(ctx, accountKey(a.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if a.Live() && (!strings.Contains(string(e.Value()), "xkv1:"+dstKey.PublicKey()) || strings.Contains(string(e.Value()), srcKey.PublicKey())) {
			t.Fatalf("account %s is not sealed with the bucket's key", a.Name)
		}
	}
	if got, _ := dst.AccountByName(ctx, "dup"); got.PublicKey != dup.PublicKey {
		t.Fatal("Migrate overwrote the bucket's own account of a name")
	}

	// Again: nothing to do.
	r, err = Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	want = MigrateReport{Accounts: MigrateCounts{Same: 5, Conflicts: 1}, Users: MigrateCounts{Same: 11, Conflicts: 3}}
	if r.Accounts != want.Accounts || r.Users != want.Users {
		t.Fatalf("second run: %+v, want %+v", r, want)
	}

	// The bucket's alpha is newer: left, and reported. The source's beta
	// is newer: written over.
	alpha, _ := dst.Account(ctx, live[0].PublicKey)
	alpha.JWT = accountJWTAt(t, alpha.PublicKey, alpha.Name, now+100)
	if _, err := dst.UpdateAccount(ctx, alpha, alpha.Revision); err != nil {
		t.Fatal(err)
	}
	alpha, _ = dst.Account(ctx, alpha.PublicKey)
	beta := live[1]
	beta.JWT = accountJWTAt(t, beta.PublicKey, beta.Name, now+50)
	if _, err := src.UpdateAccount(ctx, beta, beta.Revision); err != nil {
		t.Fatal(err)
	}
	// A user key the bucket holds with another record: left, and reported.
	extra := newUser(t, live[2].PublicKey, "extra")
	if err := src.AddUser(ctx, extra, true); err != nil {
		t.Fatal(err)
	}
	other := extra
	other.Name = "elsewhere"
	if err := dst.AddUser(ctx, other, true); err != nil {
		t.Fatal(err)
	}
	r, err = Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	want = MigrateReport{Accounts: MigrateCounts{Same: 3, Replaced: 1, Conflicts: 2}, Users: MigrateCounts{Same: 11, Conflicts: 4}}
	if r.Accounts != want.Accounts || r.Users != want.Users {
		t.Fatalf("third run: %+v, want %+v", r, want)
	}
	if got, _ := dst.Account(ctx, alpha.PublicKey); !reflect.DeepEqual(got, alpha) {
		t.Fatal("Migrate overwrote a newer account")
	}
	if got, _ := dst.Account(ctx, beta.PublicKey); got.JWT != beta.JWT {
		t.Fatal("Migrate did not write over an older account")
	}
	for _, k := range []string{alpha.PublicKey, extra.PublicKey} {
		if !strings.Contains(strings.Join(r.Conflicts, "\n"), k) {
			t.Fatalf("%s is not reported: %v", k, r.Conflicts)
		}
	}
	if got, _ := dst.User(ctx, extra.PublicKey); !got.Equal(other) {
		t.Fatal("Migrate overwrote a user record")
	}
}

// migrateStores starts a server and opens the source of a migration (a
// store in bucket "filestore", standing for the file store) and a store
// in the default bucket for each instance named, all with one seal key.
func migrateStores(t *testing.T, instances ...string) (*Store, []*Store) {
	t.Helper()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	src := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Bucket: "filestore", Instance: "src"})
	var dst []*Store
	for _, in := range instances {
		dst = append(dst, openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: in}))
	}
	return src, dst
}

// TestMigrateLeavesRemovedAccountsRemoved: an account deleted in the KV
// deployment and dropped after its tombstone's retention (a delete marker
// at its key) is not brought back live, seeds and users and all, by a
// migrate run again from the file store it came from: the reconciler
// would have pushed it to the servers again.
func TestMigrateLeavesRemovedAccountsRemoved(t *testing.T) {
	src, stores := migrateStores(t, "dst")
	dst := stores[0]
	ctx := bg(t)
	a := newAccount(t, "gone")
	if _, err := src.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := src.AddUser(ctx, newUser(t, a.PublicKey, "u"), true); err != nil {
		t.Fatal(err)
	}
	if r, err := Migrate(ctx, dst, src); err != nil || r.Accounts.Copied != 1 {
		t.Fatalf("first migrate: %+v, %v", r, err)
	}
	// Deleted in the KV deployment, and dropped after its retention.
	cur, err := dst.Account(ctx, a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := dst.UpdateAccount(ctx, tombstone(t, cur, provision.PhaseDeleted, time.Now().Unix()+1), cur.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Accounts.Copied != 0 || r.Accounts.Conflicts != 1 || !strings.Contains(strings.Join(r.Conflicts, "\n"), "removed") {
		t.Errorf("migrate again after the account was removed: %+v, want it a conflict saying the bucket removed it", r)
	}
	if got, err := dst.Account(ctx, a.PublicKey); err == nil {
		t.Errorf("the removed account is back in the bucket: %s, %s", got.Name, got.Phase)
	}
}

// TestMigrateAgainNamesAccountsOnlyInTheBucket: a migration rehearsed
// while the file store keeps serving, run again at the switch: an account
// the file store deleted meanwhile, and dropped after its tombstone's
// retention, is no longer in the source, but live in the bucket, where the
// KV deployment would push it to the servers again, seeds and all. Migrate
// said nothing of it; it now lists such accounts.
func TestMigrateAgainNamesAccountsOnlyInTheBucket(t *testing.T) {
	src, stores := migrateStores(t, "dst")
	dst := stores[0]
	ctx := bg(t)
	now := time.Now().Unix()
	var accts []provision.Account
	for _, name := range []string{"kept", "gone"} {
		a := newAccount(t, name)
		a.JWT = accountJWTAt(t, a.PublicKey, name, now)
		rev, err := src.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		a.Revision = rev
		accts = append(accts, a)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.BucketOnly) != 0 {
		t.Fatalf("first run: bucket only %v, want none", r.BucketOnly)
	}
	// The source deletes "gone" and drops it.
	gone := accts[1]
	rev, err := src.UpdateAccount(ctx, tombstone(t, gone, provision.PhaseDeleted, now+1), gone.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.RemoveAccount(ctx, gone.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	r, err = Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.BucketOnly) != 1 || !strings.Contains(r.BucketOnly[0], gone.PublicKey) || !strings.Contains(r.BucketOnly[0], `"gone"`) {
		t.Errorf("second run: bucket only %q, want the account the source dropped", r.BucketOnly)
	}
	if r.Accounts.Same != 1 || len(r.Conflicts) != 0 {
		t.Errorf("second run: %+v, want kept the same and no conflicts", r)
	}
}

// TestMigrateAgainAfterANameWasReused: a migration rehearsed while the
// file store keeps serving, run again at the switch, after the file
// deployment deleted "acme" and made a new "acme". Migrate went through
// the accounts in name order, then key order: the new account came before
// the tombstone that frees its name whenever its key sorted first, and
// was refused as a name "a live account has it" (the old acme, still live
// in the bucket until the same run wrote its tombstone), exit 2, its
// users left behind.
func TestMigrateAgainAfterANameWasReused(t *testing.T) {
	src, stores := migrateStores(t, "dst")
	dst := stores[0]
	ctx := bg(t)
	now := time.Now().Unix()
	old := newAccount(t, "acme")
	old.JWT = accountJWTAt(t, old.PublicKey, "acme", now)
	rev, err := src.CreateAccount(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Migrate(ctx, dst, src); err != nil || r.Accounts.Copied != 1 {
		t.Fatalf("rehearsal: %+v, %v", r, err)
	}
	// The file deployment deletes acme and makes a new acme, whose key
	// sorts before the old one's.
	if _, err := src.UpdateAccount(ctx, tombstone(t, old, provision.PhaseDeleted, now+1), rev); err != nil {
		t.Fatal(err)
	}
	var renewed provision.Account
	for {
		renewed = newAccount(t, "acme")
		if renewed.PublicKey < old.PublicKey {
			break
		}
	}
	renewed.JWT = accountJWTAt(t, renewed.PublicKey, "acme", now+2)
	if _, err := src.CreateAccount(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, renewed.PublicKey, "web")
	if err := src.AddUser(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Conflicts) != 0 || r.Accounts.Copied != 1 || r.Accounts.Replaced != 1 || r.Users.Copied != 1 {
		t.Fatalf("migrate again: %+v, want the tombstone replaced, the new acme and its user copied, no conflicts", r)
	}
	if got, err := dst.AccountByName(ctx, "acme"); err != nil || got.PublicKey != renewed.PublicKey {
		t.Errorf("acme in the bucket: %s, %v; want the new one %s", got.PublicKey, err, renewed.PublicKey)
	}
	if got, err := dst.Account(ctx, old.PublicKey); err != nil || got.Live() {
		t.Errorf("the old acme in the bucket: live %v, %v; want its tombstone", got.Live(), err)
	}
}

// TestMigrateAfterARunCutShortBeforeTheRecord: a run killed after it
// claimed an account's name, before it wrote the record, left a claim
// without account; a create through a KV instance then took the name, and
// voided the record's key on its way. The next run said "the bucket
// removed this account", of an account the bucket never held, and never
// copied it, even once the name was free again.
func TestMigrateAfterARunCutShortBeforeTheRecord(t *testing.T) {
	src, stores := migrateStores(t, "dst", "kv")
	dst, kv := stores[0], stores[1]
	ctx := bg(t)
	now := time.Now().Unix()
	a := newAccount(t, "acme")
	a.JWT = accountJWTAt(t, a.PublicKey, "acme", now)
	if _, err := src.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	crashAt(dst, "create: name claimed", nil)
	if _, err := Migrate(ctx, dst, src); !errors.Is(err, errCrash) {
		t.Fatalf("the run cut short: %v", err)
	}
	dst.fault = nil
	b := newAccount(t, "acme")
	b.JWT = accountJWTAt(t, b.PublicKey, "acme", now)
	brev, err := kv.CreateAccount(ctx, b)
	if err != nil {
		t.Fatalf("a KV instance's create over the claim left behind: %v", err)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	why := strings.Join(r.Conflicts, "\n")
	if r.Accounts.Conflicts != 1 || strings.Contains(why, "removed") || !strings.Contains(why, b.PublicKey) {
		t.Fatalf("migrate after the cut-short run: %+v\nwant a conflict naming %s, which has the name, not a removal", r, b.PublicKey)
	}
	// Once the name is free, the account is copied: the bucket never
	// removed it.
	if _, err := kv.UpdateAccount(ctx, tombstone(t, b, provision.PhaseDeleted, now+1), brev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "dst sees b deleted", func() bool {
		got, err := dst.Account(ctx, b.PublicKey)
		return err == nil && !got.Live()
	})
	r, err = Migrate(ctx, dst, src)
	if err != nil || r.Accounts.Copied != 1 || len(r.Conflicts) != 0 {
		t.Fatalf("migrate once the name is free: %+v, %v; want acme copied", r, err)
	}
	if got, err := dst.AccountByName(ctx, "acme"); err != nil || got.PublicKey != a.PublicKey {
		t.Errorf("acme in the bucket: %s, %v; want %s", got.PublicKey, err, a.PublicKey)
	}
}

// migrateTwiceAt runs a migration of src into first, and, when first's
// run reaches the fault point, a whole one into second: two runs at once.
// It returns their reports, first's and second's.
func migrateTwiceAt(t *testing.T, first, second *Store, src provision.Store, point string) (MigrateReport, MigrateReport) {
	t.Helper()
	ctx := bg(t)
	var r2 MigrateReport
	ran := false
	first.fault = func(p string) error {
		if p == point {
			first.fault = nil
			ran = true
			var err error
			if r2, err = Migrate(ctx, second, src); err != nil {
				t.Errorf("the second run: %v", err)
			}
		}
		return nil
	}
	r1, err := Migrate(ctx, first, src)
	if err != nil {
		t.Fatal(err)
	}
	if !ran {
		t.Fatalf("the first run never reached %q: the second did not run beside it", point)
	}
	return r1, r2
}

// TestTwoMigratesAtOnce: two migrate runs of the same file store at once
// (two operators, or a run started again while the first was still
// going). The second to write an account found its key taken by the
// first's identical record and reported it as a conflict, "the public key
// has a record", and each of its users as "its account is not in the
// bucket": exit 2, for a bucket that holds exactly the source.
func TestTwoMigratesAtOnce(t *testing.T) {
	src, stores := migrateStores(t, "m1", "m2")
	m1, m2 := stores[0], stores[1]
	ctx := bg(t)
	now := time.Now().Unix()
	a := newAccount(t, "acme")
	a.JWT = accountJWTAt(t, a.PublicKey, "acme", now)
	if _, err := src.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := src.AddUser(ctx, newUser(t, a.PublicKey, "web"), true); err != nil {
		t.Fatal(err)
	}
	// The first run has claimed acme's name when the second runs through.
	r, second := migrateTwiceAt(t, m1, m2, src, "create: name claimed")
	if len(second.Conflicts) != 0 {
		t.Errorf("the second run: %+v", second)
	}
	if len(r.Conflicts) != 0 || r.Accounts.Same != 1 || r.Users.Same != 1 {
		t.Fatalf("the first run, after the second stored the same: %+v, want the account and its user already there, no conflicts", r)
	}
}

// TestTwoMigratesAtOnceCopyingAUser: the second of two runs at once to
// write a user record found the key taken by the first's identical
// record, and reported it "stored meanwhile by another instance": exit 2,
// for a bucket that holds exactly the source.
func TestTwoMigratesAtOnceCopyingAUser(t *testing.T) {
	src, stores := migrateStores(t, "m1", "m2")
	m1, m2 := stores[0], stores[1]
	ctx := bg(t)
	a := newAccount(t, "acme")
	if _, err := src.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := src.AddUser(ctx, newUser(t, a.PublicKey, "web"), true); err != nil {
		t.Fatal(err)
	}
	// The first run has found the user missing when the second runs
	// through.
	r, second := migrateTwiceAt(t, m1, m2, src, "migrate: user checked")
	if len(second.Conflicts) != 0 {
		t.Errorf("the second run: %+v", second)
	}
	// Found there (Same), or counted as its own write (Copied): a write
	// refused in a batch is made again on its own, and an identical record
	// in its key is then taken as the store's own write whose answer was
	// lost (addDurable), which is all it can tell of an identical record.
	// Either way, no conflict.
	if len(r.Conflicts) != 0 || r.Users.Same+r.Users.Copied != 1 {
		t.Fatalf("the first run, after the second stored the same user: %+v, want it already there, no conflicts", r)
	}
}

// TestTwoMigratesAtOnceReplacingAnAccount: the second of two runs at once
// to write over an account older in the bucket found it changed by the
// first (ErrStale), to exactly the source's version, and reported it as
// a conflict: exit 2, for a bucket that holds exactly the source.
func TestTwoMigratesAtOnceReplacingAnAccount(t *testing.T) {
	src, stores := migrateStores(t, "m1", "m2")
	m1, m2 := stores[0], stores[1]
	ctx := bg(t)
	now := time.Now().Unix()
	a := newAccount(t, "acme")
	a.JWT = accountJWTAt(t, a.PublicKey, "acme", now)
	rev, err := src.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := Migrate(ctx, m1, src); err != nil || r.Accounts.Copied != 1 {
		t.Fatalf("rehearsal: %+v, %v", r, err)
	}
	// The bucket holds acme deleted (older), the source acme live again
	// (a delete put back), newer.
	cur, err := m1.Account(ctx, a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m1.UpdateAccount(ctx, tombstone(t, cur, provision.PhaseDeleted, now+1), cur.Revision); err != nil {
		t.Fatal(err)
	}
	a.JWT = accountJWTAt(t, a.PublicKey, "acme", now+2)
	if _, err := src.UpdateAccount(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "m2 sees acme deleted", func() bool {
		got, err := m2.Account(ctx, a.PublicKey)
		return err == nil && !got.Live()
	})
	r, second := migrateTwiceAt(t, m1, m2, src, "revive: name claimed")
	if len(second.Conflicts) != 0 || second.Accounts.Replaced != 1 {
		t.Errorf("the second run: %+v", second)
	}
	if len(r.Conflicts) != 0 || r.Accounts.Same != 1 {
		t.Fatalf("the first run, after the second wrote the same over it: %+v, want it already there, no conflicts", r)
	}
	if got, err := m1.AccountLatest(ctx, a.PublicKey); err != nil || got.JWT != a.JWT || !got.Live() {
		t.Errorf("acme in the bucket: live %v, %v; want the source's", got.Live(), err)
	}
}

// TestMigrateNamesAHiddenRecordAsHidden: a live record the bucket holds
// but does not show (its name entry names another account: a create or a
// revive that lost its name, left by a crash) was reported as an account
// the bucket removed, deleted and dropped after its tombstone's retention:
// the operator was told the account was deleted, which it never was.
func TestMigrateNamesAHiddenRecordAsHidden(t *testing.T) {
	src, stores := migrateStores(t, "dst")
	dst := stores[0]
	ctx := bg(t)
	a := newAccount(t, "shadowed")
	if _, err := src.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// The name entry taken over by another create of the name, cut short
	// before its record, the record left. (A name entry naming an account
	// of another name is damage, which the mirror skips.)
	other := newAccount(t, a.Name)
	if _, err := dst.kv.Put(ctx, nameKey(a.Name), []byte(other.PublicKey)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the record hidden", func() bool {
		_, err := dst.Account(ctx, a.PublicKey)
		return errors.Is(err, provision.ErrNotFound)
	})
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(r.Conflicts, "\n")
	if r.Accounts.Conflicts != 1 || strings.Contains(all, "removed") || !strings.Contains(all, "hidden") {
		t.Fatalf("migrate with the account's record hidden in the bucket: %+v, want a conflict saying it is hidden, not removed", r)
	}
}

// TestMigrateDoesNotCallALostCreateRemoved: the record of a create that
// lost its name to another account was never shown; once removed (by the
// create backing out, or by the next open's sweep after a crash before
// it), store migrate must not report the account as one the bucket
// removed (deleted, and dropped after retention).
func TestMigrateDoesNotCallALostCreateRemoved(t *testing.T) {
	stores := func(t *testing.T) (*deployment, *Store, *Store, *Store) {
		d := startDeployment(t, 1)
		key, _ := newSealKey(t)
		src := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Bucket: "filestore", Instance: "src"})
		sa := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "a"})
		sb := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "b"})
		return d, src, sa, sb
	}
	check := func(t *testing.T, dst, src *Store, a provision.Account) {
		t.Helper()
		ctx := bg(t)
		if _, err := src.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		r, err := Migrate(ctx, dst, src)
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(r.Conflicts, "\n")
		if strings.Contains(all, "removed this account") {
			t.Fatalf("migrate of an account whose create lost its name: %+v, want it not reported as removed by the bucket", r)
		}
	}
	t.Run("backed out", func(t *testing.T) {
		_, src, sa, sb := stores(t)
		ctx := bg(t)
		a, b := newAccount(t, "contested"), newAccount(t, "contested")
		takeOverAt(t, sa, sb, b, "create: name claimed", "")
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, provision.ErrConflict) {
			t.Fatalf("a's create: %v, want ErrConflict (fenced out)", err)
		}
		sa.fault = nil
		check(t, sb, src, a)
	})
	t.Run("swept", func(t *testing.T) {
		d, src, sa, sb := stores(t)
		ctx := bg(t)
		a, b := newAccount(t, "left-behind"), newAccount(t, "left-behind")
		takeOverAt(t, sa, sb, b, "create: name claimed", "create: record written")
		if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
			t.Fatalf("a's create: %v, want the crash", err)
		}
		sa.fault = nil
		sc := openStore(t, d.connect(t, d.svcCreds), sa.opts)
		eventually(t, 5*time.Second, "the record is removed", func() bool {
			_, err := sc.kv.Get(ctx, accountKey(a.PublicKey))
			return errors.Is(err, jetstream.ErrKeyNotFound)
		})
		check(t, sc, src, a)
	})
}

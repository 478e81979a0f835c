package filestore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/keystore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// writeV1Store writes a store with the previous version's package: a
// snapshot.json and a journal on top of it, with a re-issued user key, a
// deleted account and a torn last line. It returns the state the upgrade
// must give, revisions aside.
func writeV1Store(t *testing.T, dir string) dump {
	t.Helper()
	ctx := context.Background()
	open := func() *keystore.DirStore {
		s, err := keystore.Open(dir, keystore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	toV1 := func(a provision.Account) keystore.Account {
		return keystore.Account{Name: a.Name, PublicKey: a.PublicKey, IdentitySeed: keystore.Seed(a.IdentitySeed), SigningSeeds: []keystore.Seed{keystore.Seed(a.SigningKeys[0].Seed)}, JWT: a.JWT}
	}
	want := dump{Users: map[string][]provision.User{}}
	// Version 1 recorded no tags.
	newUser := func(t testing.TB, account, name string, issued int64) provision.User {
		u := newUser(t, account, name, issued)
		u.Tags, u.TagsRecorded = nil, false
		return u
	}
	addUser := func(s *keystore.DirStore, a provision.Account, u provision.User) {
		if err := s.AddUser(ctx, a.PublicKey, keystore.User{Name: u.Name, PublicKey: u.PublicKey, IssuedAt: u.IssuedAt, ExpiresAt: u.ExpiresAt}); err != nil {
			t.Fatal(err)
		}
	}
	s := open()
	a, gone := newAccount(t, "kept"), newAccount(t, "gone")
	for _, x := range []provision.Account{a, gone} {
		if err := s.PutAccount(ctx, toV1(x)); err != nil {
			t.Fatal(err)
		}
	}
	u1, u2 := newUser(t, a.PublicKey, "web", 1), newUser(t, a.PublicKey, "batch", 2)
	u2.ExpiresAt = 99
	addUser(s, a, u1)
	addUser(s, a, u2)
	addUser(s, gone, newUser(t, gone.PublicKey, "x", 1))
	s.Close()

	s = open() // folds the journal into snapshot.json
	b := newAccount(t, "later")
	if err := s.PutAccount(ctx, toV1(b)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, gone.PublicKey); err != nil {
		t.Fatal(err)
	}
	u1b := u1 // version 1 let a key be issued again: the record was replaced
	u1b.Name, u1b.IssuedAt = "web2", 3
	addUser(s, a, u1b)
	u3 := newUser(t, b.PublicKey, "web", 4)
	addUser(s, b, u3)
	a.JWT = accountJWT(t, a.PublicKey, "kept v2", mustPub(t, a.SigningKeys[0].Seed))
	if err := s.PutAccount(ctx, toV1(a)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A crash in the middle of a write left half a line.
	j := filepath.Join(dir, v1JournalFile)
	data := readFile(t, j)
	end := bytes.IndexByte(data, 0)
	if end < 0 {
		end = len(data)
	}
	copy(data[end:], `0badc0de {"op":"put","acc`)
	writeFile(t, j, data)
	for _, f := range []string{v1SnapshotFile, v1JournalFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("the version 1 store has no %s: %v", f, err)
		}
	}
	want.Accounts = []provision.Account{a, b}
	// Version 1 signed every user with the account's one signing key: the
	// upgrade records it as their signer.
	for _, u := range []*provision.User{&u1b, &u2} {
		u.Signer = mustPub(t, a.SigningKeys[0].Seed)
	}
	u3.Signer = mustPub(t, b.SigningKeys[0].Seed)
	want.Users[a.PublicKey] = []provision.User{u1b, u2}
	want.Users[b.PublicKey] = []provision.User{u3}
	return want
}

// assertV1State checks an upgraded store against what the version 1 store
// held: revisions are new, distinct and non-zero.
func assertV1State(t *testing.T, s *Store, want dump) {
	t.Helper()
	got := dumpOf(t, s)
	revs := map[uint64]bool{}
	for i := range got.Accounts {
		if r := got.Accounts[i].Revision; r == 0 || revs[r] {
			t.Errorf("account %s has revision %d after the upgrade", got.Accounts[i].Name, r)
		}
		revs[got.Accounts[i].Revision] = true
		got.Accounts[i].Revision = 0
	}
	assertDump(t, got, want)
}

func TestUpgradeFromV1(t *testing.T) {
	tests := []struct {
		name string
		seal bool
	}{{"plain", false}, {"sealed on the way", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			want := writeV1Store(t, dir)
			orig := readFile(t, filepath.Join(dir, v1SnapshotFile))
			opts := Options{}
			if tt.seal {
				opts.Seal = newSealKey(t)
			}
			rep, err := Check(dir, opts.Seal)
			if err != nil || rep.Damaged() || rep.Format != formatV1 || rep.Accounts[provision.PhaseLive] != 2 || rep.Users != 3 {
				t.Fatalf("Check of a version 1 store: %+v, %v", rep, err)
			}
			log, logs := newLog()
			opts.Logger = log
			s := open(t, dir, opts)
			assertV1State(t, s, want)
			// What the upgrade wrote holds seeds sealed, when it has a key.
			data := slices.Concat(readFile(t, filepath.Join(dir, snapshotFile)), readFile(t, filepath.Join(dir, journalFile)))
			for _, a := range want.Accounts {
				if has := bytes.Contains(data, []byte(a.IdentitySeed)); has == tt.seal {
					t.Errorf("the upgraded store holds the plain seed of %s: %v, with a seal key: %v", a.Name, has, tt.seal)
				}
			}
			if !strings.Contains(logs.String(), "upgraded a version 1 store") {
				t.Errorf("the upgrade is not logged: %s", logs.String())
			}
			// With a seal key, the backups are the only plain seeds left:
			// the operator is told to remove them.
			if warned := strings.Contains(logs.String(), "backups hold the seeds unsealed"); warned != tt.seal {
				t.Errorf("the unsealed backups warned of: %v, with a seal key: %v", warned, tt.seal)
			}
			if !strings.Contains(logs.String(), "torn last record") {
				t.Errorf("the dropped torn line is not logged: %s", logs.String())
			}
			if got := readFile(t, filepath.Join(dir, v1SnapshotFile+v1BackupSuffix)); !bytes.Equal(got, orig) {
				t.Error("snapshot.json.v1 is not the old snapshot")
			}
			// The store goes on in the new format.
			if _, err := s.CreateAccount(context.Background(), newAccount(t, "new")); err != nil {
				t.Fatal(err)
			}
			closeStore(t, s)
			logs2 := &logBuffer{}
			opts.Logger = slogTo(logs2)
			s = open(t, dir, opts)
			if strings.Contains(logs2.String(), "upgraded") {
				t.Errorf("a second open upgraded again: %s", logs2.String())
			}
			closeStore(t, s)
			data = slices.Concat(readFile(t, filepath.Join(dir, snapshotFile)), readFile(t, filepath.Join(dir, journalFile)))
			for _, a := range want.Accounts {
				if has := bytes.Contains(data, []byte(a.IdentitySeed)); has == tt.seal {
					t.Errorf("the store holds the plain seed of %s: %v, with a seal key: %v", a.Name, has, tt.seal)
				}
			}
		})
	}
}

func TestV1AndV2Together(t *testing.T) {
	dir := t.TempDir()
	want := fill(t, open(t, dir, Options{}), "v2")
	writeFile(t, filepath.Join(dir, v1SnapshotFile), []byte(`{"version":1,"accounts":[]}`))
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "version 1 file") {
		t.Fatalf("Open of a directory with two stores: %v", err)
	}
	// Check says a start refuses it: not damage in a file, but refused.
	rep, err := Check(dir, nil)
	if err != nil || len(rep.Refused) != 1 || !rep.Refuses() || !strings.Contains(rep.Refused[0], v1SnapshotFile) {
		t.Fatalf("Check: %+v, %v; want it refused for the version 1 file", rep, err)
	}
	if err := os.Remove(filepath.Join(dir, v1SnapshotFile)); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
}

func TestSealedStore(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keySeed := newSealSeed(t)
	key, err := seal.New(keySeed)
	if err != nil {
		t.Fatal(err)
	}
	other := newSealKey(t)
	// A plain store first: opened with a key, its seeds are sealed.
	plain := fill(t, open(t, dir, Options{}), "plain")
	s := open(t, dir, Options{Seal: key})
	assertDump(t, dumpOf(t, s), plain)
	a := newAccount(t, "sealed")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	want := dumpOf(t, s)
	closeStore(t, s)
	for _, f := range []string{snapshotFile, journalFile} {
		data := readFile(t, filepath.Join(dir, f))
		for _, acct := range want.Accounts {
			for _, seed := range append([]provision.Seed{acct.IdentitySeed}, seedsOf(acct)...) {
				if seed != "" && bytes.Contains(data, []byte(seed)) {
					t.Fatalf("%s holds a plain seed of %s", f, acct.Name)
				}
			}
		}
	}
	tests := []struct {
		name string
		key  func() Options
	}{
		{"no key", func() Options { return Options{} }},
		{"another key", func() Options { return Options{Seal: other} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(dir, tt.key())
			if !errors.Is(err, ErrSealKey) {
				t.Fatalf("Open: %v, want ErrSealKey", err)
			}
			rep, err := Check(dir, tt.key().Seal)
			if err != nil || rep.Damaged() || !strings.Contains(strings.Join(append(rep.Notes, rep.Refused...), "\n"), "not checked") {
				t.Fatalf("Check without the key: %+v, %v", rep, err)
			}
		})
	}
	s = open(t, dir, Options{Seal: key})
	assertDump(t, dumpOf(t, s), want)
	closeStore(t, s)
	// A rotated key: the new one seals, the previous one still opens.
	rotated := newSealKey(t, keySeed)
	s = open(t, dir, Options{Seal: rotated})
	assertDump(t, dumpOf(t, s), want)
	closeStore(t, s)
	if _, err := Open(dir, Options{Seal: key}); !errors.Is(err, ErrSealKey) {
		t.Fatalf("after the rotation the old key alone still opens the store: %v", err)
	}
}

func seedsOf(a provision.Account) []provision.Seed {
	var out []provision.Seed
	for _, sk := range a.SigningKeys {
		out = append(out, sk.Seed)
	}
	return out
}

func TestSeedsNeverInErrorsOrLogs(t *testing.T) {
	fastDisk(t)
	ctx := context.Background()
	dir := t.TempDir()
	log, logs := newLog()
	s := open(t, dir, Options{Logger: log})
	a := newAccount(t, "secret")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	seeds := append([]provision.Seed{a.IdentitySeed}, seedsOf(a)...)
	var errs []error
	bad := a
	bad.SigningKeys = []provision.SigningKey{{Seed: a.IdentitySeed}}
	_, err = s.UpdateAccount(ctx, bad, rev)
	errs = append(errs, err)
	bad = a
	bad.IdentitySeed = seedsOf(a)[0]
	_, err = s.UpdateAccount(ctx, bad, rev)
	errs = append(errs, err)
	_, err = s.CreateAccount(ctx, a)
	errs = append(errs, err)
	closeStore(t, s)
	// Damage next to the seeds, with and without a valid checksum.
	j := readFile(t, filepath.Join(dir, journalFile))
	writeFile(t, filepath.Join(dir, journalFile), rewriteLine(t, j, dataStart, func(m map[string]any) {
		acct := m["account"].(map[string]any)
		acct["identity_seed"] = string(seedsOf(a)[0])
	}))
	_, err = Open(dir, Options{Logger: log})
	errs = append(errs, err)
	rep, err := Check(dir, nil)
	errs = append(errs, err)
	var buf bytes.Buffer
	rep.WriteTo(&buf)
	j[dataStart+20] ^= 1
	writeFile(t, filepath.Join(dir, journalFile), j)
	_, err = Open(dir, Options{Logger: log})
	errs = append(errs, err)
	rep, _ = Check(dir, nil)
	rep.WriteTo(&buf)

	var all strings.Builder
	for _, err := range errs {
		if err != nil {
			all.WriteString(err.Error() + "\n")
		}
	}
	all.WriteString(logs.String())
	all.WriteString(buf.String())
	if !strings.Contains(all.String(), a.PublicKey) {
		t.Fatalf("the errors do not even name the account: %s", all.String())
	}
	for _, seed := range seeds {
		if strings.Contains(all.String(), string(seed)) {
			t.Fatalf("a seed reached an error, a log or a report:\n%s", all.String())
		}
	}
	if !reflect.DeepEqual(slices.Compact([]bool{errs[0] != nil, errs[1] != nil, errs[2] != nil}), []bool{true}) {
		t.Errorf("the bad writes did not all fail: %v", errs)
	}
}

// TestUpgradeFromFixture upgrades a store the previous version wrote, kept
// in testdata (its zeroed space cut off), so that the upgrade stays tested
// once the previous version's package is gone.
func TestUpgradeFromFixture(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		writeFile(t, filepath.Join(dir, n), readFile(t, filepath.Join("testdata", "v1store", n)))
	}
	s := open(t, dir, Options{})
	ctx := context.Background()
	want := map[string][]string{"kept": {"web2", "batch"}, "later": {"web"}}
	accts, err := s.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, a := range accts {
		if !a.Live() || a.IdentitySeed == "" || len(a.SigningKeys) != 1 {
			t.Errorf("account %s: phase %q, %d signing keys", a.Name, a.Phase, len(a.SigningKeys))
		}
		us, err := s.Users(ctx, a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		got[a.Name] = []string{}
		for _, u := range us {
			got[a.Name] = append(got[a.Name], u.Name)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("upgraded accounts and users %v, want %v", got, want)
	}
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		if _, err := os.Stat(filepath.Join(dir, n+v1BackupSuffix)); err != nil {
			t.Errorf("no backup of %s: %v", n, err)
		}
	}
}

// TestExistingLeavesAVersion1StoreAsItWas: Existing opens a store to read
// it (store migrate's source, "it is not changed"); a version 1 store was
// upgraded in place all the same, its snapshot.json and journal renamed
// to backups, and provisioner 0.1, still serving from that directory
// during a rehearsal of the migration, started empty at its next start.
func TestExistingLeavesAVersion1StoreAsItWas(t *testing.T) {
	dir := t.TempDir()
	want := writeV1Store(t, dir)
	files := func() map[string]string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, e := range entries {
			m[e.Name()] = string(readFile(t, filepath.Join(dir, e.Name())))
		}
		return m
	}
	before := files()
	s, err := Open(dir, Options{Seal: newSealKey(t), Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	assertV1State(t, s, want)
	closeStore(t, s)
	after := files()
	for n := range after {
		if _, ok := before[n]; !ok {
			t.Errorf("reading the version 1 store left %s in its directory", n)
		}
	}
	for n, data := range before {
		if after[n] != data {
			t.Errorf("reading the version 1 store changed or removed its %s", n)
		}
	}
	// The version that owns it still finds its accounts.
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close()
	if got := ks.Len(); got != len(want.Accounts) {
		t.Fatalf("provisioner 0.1 finds %d accounts after the store was read; want %d", got, len(want.Accounts))
	}
}

// TestExistingOpensAVersion1JournalAlone: provisioner 0.1 wrote
// snapshot.json only when a start found records in its journal, or at a
// compaction; a store it never restarted holds its journal alone. Open
// upgrades that, but Existing (store migrate's source) refused it as a
// directory holding no store.
func TestExistingOpensAVersion1JournalAlone(t *testing.T) {
	dir := t.TempDir()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := newAccount(t, "only-journaled")
	if err := ks.PutAccount(context.Background(), keystore.Account{Name: a.Name, PublicKey: a.PublicKey, IdentitySeed: keystore.Seed(a.IdentitySeed), SigningSeeds: []keystore.Seed{keystore.Seed(a.SigningKeys[0].Seed)}, JWT: a.JWT}); err != nil {
		t.Fatal(err)
	}
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, v1SnapshotFile)); err == nil {
		t.Fatalf("provisioner 0.1 wrote %s at its first start; the test needs a journal alone", v1SnapshotFile)
	}
	s, err := Open(dir, Options{Existing: true})
	if err != nil {
		t.Fatalf("Existing open of a version 1 store holding its journal alone: %v", err)
	}
	defer closeStore(t, s)
	if got, err := s.AccountByName(context.Background(), a.Name); err != nil || got.PublicKey != a.PublicKey {
		t.Fatalf("the account of the version 1 journal: %+v, %v", got.PublicKey, err)
	}
	if _, err := os.Stat(filepath.Join(dir, v1JournalFile)); err != nil {
		t.Errorf("reading the version 1 store moved its journal: %v", err)
	}
}

// TestUpgradeRefusalNamesTheJournal: a version 1 account that does not
// upgrade (here a JWT of another account) stops the start with a message
// naming the file and offset. One whose record was in the journal was
// named as snapshot.json at offset 0, a file that was intact, or not even
// there.
func TestUpgradeRefusalNamesTheJournal(t *testing.T) {
	dir := t.TempDir()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	good, bad := newAccount(t, "good"), newAccount(t, "bad")
	for _, a := range []provision.Account{good, bad} {
		jwt := a.JWT
		if a.Name == "bad" {
			jwt = good.JWT
		}
		if err := ks.PutAccount(context.Background(), keystore.Account{Name: a.Name, PublicKey: a.PublicKey, IdentitySeed: keystore.Seed(a.IdentitySeed), SigningSeeds: []keystore.Seed{keystore.Seed(a.SigningKeys[0].Seed)}, JWT: jwt}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	data := readFile(t, filepath.Join(dir, v1JournalFile))
	line := bytes.Index(data, []byte(`"name":"bad"`))
	line = bytes.LastIndexByte(data[:line], '\n') + 1
	_, err = Open(dir, Options{})
	var d *Damage
	if !errors.As(err, &d) {
		t.Fatalf("Open of a version 1 store with an account of another's JWT: %v", err)
	}
	if d.File != filepath.Join(dir, v1JournalFile) || d.Offset != int64(line) || !strings.Contains(d.What, bad.PublicKey) {
		t.Errorf("the refusal names %s at %d (%s); want %s at %d, the record of %s", d.File, d.Offset, d.What, v1JournalFile, line, bad.PublicKey)
	}
}

// dirFiles returns the name, mode and content of every file in dir.
func dirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			m[e.Name()] = "directory"
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = info.Mode().String() + " " + string(readFile(t, filepath.Join(dir, e.Name())))
	}
	return m
}

// TestExistingLeavesAVersion2StoreAsItWas: store migrate says its source
// "is not changed", but an Existing open of a store with journal records
// folded them into a new snapshot and journal in the source directory (new
// files, owned by whoever ran migrate: a `sudo provisioner store migrate`
// left the service a store it could not open), and wrote its process ID
// into the lock file.
func TestExistingLeavesAVersion2StoreAsItWas(t *testing.T) {
	dir := t.TempDir()
	want := smallStore(t, dir)
	before := dirFiles(t, dir)
	s, err := Open(dir, Options{Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	assertDump(t, dumpOf(t, s), want)
	closeStore(t, s)
	after := dirFiles(t, dir)
	if !reflect.DeepEqual(before, after) {
		var changed []string
		for n := range after {
			if before[n] != after[n] {
				changed = append(changed, n)
			}
		}
		for n := range before {
			if _, ok := after[n]; !ok {
				changed = append(changed, n+" (gone)")
			}
		}
		slices.Sort(changed)
		t.Fatalf("reading the store changed %v in its directory", changed)
	}
}

// TestExistingReadsAStoreInUse: a migration is rehearsed while the file
// deployment still serves; its store's lock made store migrate fail
// ("store is in use"), or, once the service stopped, kept it from
// starting again while migrate read. The reader takes no lock: it reads
// what the store holds, and the store that has it open goes on.
func TestExistingReadsAStoreInUse(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	owner := open(t, dir, Options{})
	a := newAccount(t, "acme")
	rev, err := owner.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(dir, Options{Existing: true})
	if err != nil {
		t.Fatalf("Existing open of a store another Store has open: %v", err)
	}
	if got, err := r.AccountByName(ctx, "acme"); err != nil || got.PublicKey != a.PublicKey {
		t.Fatalf("the reader's acme: %s, %v", got.PublicKey, err)
	}
	if _, err := r.CreateAccount(ctx, newAccount(t, "written")); err == nil {
		t.Fatal("a store opened to be read took a write")
	}
	a.JWT = accountJWT(t, a.PublicKey, "acme", mustPub(t, a.SigningKeys[0].Seed))
	if _, err := owner.UpdateAccount(ctx, a, rev); err != nil {
		t.Fatalf("the owner, while a reader has the store: %v", err)
	}
	want := dumpOf(t, owner)
	closeStore(t, r)
	closeStore(t, owner)
	// While the reader had it, and after: the owner opens it again.
	again := open(t, dir, Options{})
	assertDump(t, dumpOf(t, again), want)
}

// TestExistingLeavesNoCopyOfAVersion1Store: a version 1 store was read by
// upgrading a copy of it in the temporary directory, removed at Close; a
// migrate killed meanwhile left that copy, its seeds unsealed, in /tmp.
// The store is read in memory: nothing is written anywhere.
func TestExistingLeavesNoCopyOfAVersion1Store(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	want := writeV1Store(t, dir)
	s, err := Open(dir, Options{Seal: newSealKey(t), Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	if left := dirFiles(t, tmp); len(left) > 0 {
		t.Fatalf("reading a version 1 store wrote %d files into the temporary directory, which a kill leaves there", len(left))
	}
	assertV1State(t, s, want)
}

// compactingV1Store writes a version 1 store whose snapshot.json holds
// one account and whose journal a second, and makes the first load that
// reads its snapshot.json meet a compaction of provisioner 0.1 before it
// reads the journal: 0.1 takes no lock a reader can see, and compacts by
// putting a new snapshot.json in place, then an empty journal. It returns
// the directory, the accounts 0.1 acknowledged, and whether the hook ran.
func compactingV1Store(t *testing.T) (string, []provision.Account, *bool) {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(ks *keystore.DirStore, a provision.Account) {
		t.Helper()
		if err := ks.PutAccount(ctx, keystore.Account{Name: a.Name, PublicKey: a.PublicKey, IdentitySeed: keystore.Seed(a.IdentitySeed), SigningSeeds: []keystore.Seed{keystore.Seed(a.SigningKeys[0].Seed)}, JWT: a.JWT}); err != nil {
			t.Fatal(err)
		}
	}
	first, second := newAccount(t, "first"), newAccount(t, "second")
	put(ks, first)
	ks.Close()
	ks, err = keystore.Open(dir, keystore.Options{}) // snapshot.json holds first
	if err != nil {
		t.Fatal(err)
	}
	put(ks, second) // in the journal only
	ks.Close()

	orig := loadHook
	t.Cleanup(func() { loadHook = orig })
	fired := new(bool)
	loadHook = func(step string) {
		if step != hookV1SnapshotRead || *fired {
			return
		}
		*fired = true
		// 0.1 compacts (its start folds the journal into snapshot.json).
		ks, err := keystore.Open(dir, keystore.Options{})
		if err != nil {
			t.Error(err)
			return
		}
		ks.Close()
	}
	return dir, []provision.Account{first, second}, fired
}

// TestExistingReadsAVersion1StoreThatCompacts: store migrate reads a
// version 1 store while provisioner 0.1 still serves from it (a
// rehearsal). A read that took the old snapshot.json and then the empty
// journal of a compaction held neither what the old journal held nor any
// error.
func TestExistingReadsAVersion1StoreThatCompacts(t *testing.T) {
	ctx := context.Background()
	dir, want, fired := compactingV1Store(t)
	s, err := Open(dir, Options{Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(t, s)
	if !*fired {
		t.Fatal("the hook did not run")
	}
	for _, a := range want {
		if got, err := s.AccountByName(ctx, a.Name); err != nil || got.PublicKey != a.PublicKey {
			t.Errorf("account %q acknowledged by provisioner 0.1 before the read: %s, %v", a.Name, got.PublicKey, err)
		}
	}
}

// TestCheckAndSalvageReadAVersion1StoreThatCompacts: store check and
// store salvage of a version 1 store that provisioner 0.1 serves meet the
// same compaction as the read above: Check may not count the old
// snapshot.json without the records of the old journal, with no damage
// reported, nor Salvage copy the store without them.
func TestCheckAndSalvageReadAVersion1StoreThatCompacts(t *testing.T) {
	for _, salvage := range []bool{false, true} {
		t.Run(map[bool]string{false: "Check", true: "Salvage"}[salvage], func(t *testing.T) {
			ctx := context.Background()
			dir, want, fired := compactingV1Store(t)
			var rep Report
			var err error
			to := filepath.Join(t.TempDir(), "salvaged")
			if salvage {
				rep, err = Salvage(dir, to, nil)
			} else {
				rep, err = Check(dir, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !*fired {
				t.Fatal("the hook did not run")
			}
			if rep.Damaged() {
				t.Errorf("damage reported in a store that has none: %+v", rep.Damage)
			}
			if n := rep.Accounts[provision.PhaseLive]; n != len(want) {
				t.Errorf("the report counts %d accounts, provisioner 0.1 acknowledged %d", n, len(want))
			}
			if !salvage {
				return
			}
			c := open(t, to, Options{})
			for _, a := range want {
				if got, err := c.AccountByName(ctx, a.Name); err != nil || got.PublicKey != a.PublicKey {
					t.Errorf("account %q acknowledged by provisioner 0.1 before the salvage, not in the copy: %s, %v", a.Name, got.PublicKey, err)
				}
			}
		})
	}
}

// TestUpgradeOfAVersion1StoreThatCompacts: a start of this version on the
// directory of provisioner 0.1, still serving, meets the same compaction
// as the reads above. The upgrade took the old snapshot.json and the new
// empty journal, wrote a store without what the old journal held, and
// renamed the version 1 files, which held it, out of the way.
func TestUpgradeOfAVersion1StoreThatCompacts(t *testing.T) {
	ctx := context.Background()
	dir, want, fired := compactingV1Store(t)
	s := open(t, dir, Options{})
	if !*fired {
		t.Fatal("the hook did not run")
	}
	closeStore(t, s)
	s = open(t, dir, Options{})
	defer closeStore(t, s)
	for _, a := range want {
		if got, err := s.AccountByName(ctx, a.Name); err != nil || got.PublicKey != a.PublicKey {
			t.Errorf("account %q acknowledged by provisioner 0.1 before the upgrade, not in the upgraded store: %s, %v", a.Name, got.PublicKey, err)
		}
	}
}

// TestUpgradeBackupsAre0600: the version 1 files an upgrade keeps as
// backups hold every seed in the clear. They kept the modes they had, so
// a store copied back from elsewhere (its files 0644) left world-readable
// seeds beside the new store's 0600 files: the backups are 0600 too.
func TestUpgradeBackupsAre0600(t *testing.T) {
	dir := t.TempDir()
	writeV1Store(t, dir)
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		if err := os.Chmod(filepath.Join(dir, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	closeStore(t, open(t, dir, Options{}))
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		if _, err := os.Stat(filepath.Join(dir, n+v1BackupSuffix)); err != nil {
			t.Errorf("no backup of %s: %v", n, err)
		}
	}
	checkModes(t, dir)
}

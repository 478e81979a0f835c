package keystore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nkeys"
)

// testAccount makes an account with real nkeys: an identity seed and one
// signing seed.
func testAccount(t testing.TB, name string) Account {
	t.Helper()
	id, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := id.PublicKey()
	idSeed, _ := id.Seed()
	skSeed, _ := sk.Seed()
	return Account{
		Name:         name,
		PublicKey:    pub,
		IdentitySeed: Seed(idSeed),
		SigningSeeds: []Seed{Seed(skSeed)},
		JWT:          "jwt-of-" + name,
	}
}

// testUser makes a user record with a real user public key.
func testUser(t testing.TB, name string, issued int64) User {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return User{Name: name, PublicKey: pub, IssuedAt: issued}
}

func open(t testing.TB, dir string, opts Options) *DirStore {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return s
}

// state is everything observable of a store, for comparing two stores.
type state struct {
	Accounts []Account
	Users    map[string][]User
}

func snapshotOf(t testing.TB, s *DirStore) state {
	t.Helper()
	st := state{Users: map[string][]User{}}
	for _, sum := range s.Accounts() {
		a, ok := s.Account(sum.PublicKey)
		if !ok {
			t.Fatalf("Accounts lists %s but Account does not find it", sum.PublicKey)
		}
		st.Accounts = append(st.Accounts, a)
		us, err := s.Users(sum.PublicKey)
		if err != nil {
			t.Fatalf("Users(%s): %v", sum.PublicKey, err)
		}
		st.Users[sum.PublicKey] = us
	}
	return st
}

func assertSameState(t testing.TB, got, want state) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state differs\n got: %+v\nwant: %+v", got, want)
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	defer s.Close()

	// Put in an order different from the name order.
	names := []string{"charlie", "alpha", "delta", "bravo"}
	accts := map[string]Account{}
	for _, n := range names {
		a := testAccount(t, n)
		accts[n] = a
		if err := s.PutAccount(ctx, a); err != nil {
			t.Fatalf("PutAccount(%s): %v", n, err)
		}
	}
	if s.Len() != len(names) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(names))
	}

	t.Run("get", func(t *testing.T) {
		for n, want := range accts {
			got, ok := s.Account(want.PublicKey)
			if !ok || !reflect.DeepEqual(got, want) {
				t.Errorf("Account(%s) = %+v, %v; want %+v", n, got, ok, want)
			}
			got, ok = s.AccountByName(n)
			if !ok || !reflect.DeepEqual(got, want) {
				t.Errorf("AccountByName(%s) = %+v, %v; want %+v", n, got, ok, want)
			}
		}
		if _, ok := s.Account("ANOPE"); ok {
			t.Error("Account of an unknown key found something")
		}
		if _, ok := s.AccountByName("nope"); ok {
			t.Error("AccountByName of an unknown name found something")
		}
	})

	t.Run("list sorted by name", func(t *testing.T) {
		var want []Summary
		sorted := slices.Sorted(slices.Values(names))
		for _, n := range sorted {
			want = append(want, Summary{Name: n, PublicKey: accts[n].PublicKey})
		}
		if got := s.Accounts(); !reflect.DeepEqual(got, want) {
			t.Errorf("Accounts() = %+v, want %+v", got, want)
		}
	})

	t.Run("replace keeps users", func(t *testing.T) {
		a := accts["alpha"]
		u := testUser(t, "keep", 1)
		if err := s.AddUser(ctx, a.PublicKey, u); err != nil {
			t.Fatal(err)
		}
		a.JWT = "new-jwt"
		if err := s.PutAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		accts["alpha"] = a
		got, _ := s.Account(a.PublicKey)
		if got.JWT != "new-jwt" {
			t.Errorf("JWT after replace = %q", got.JWT)
		}
		us, err := s.Users(a.PublicKey)
		if err != nil || len(us) != 1 || us[0] != u {
			t.Errorf("Users after replace = %+v, %v; want [%+v]", us, err, u)
		}
	})

	t.Run("users", func(t *testing.T) {
		a := accts["bravo"]
		u1 := testUser(t, "web", 10)
		u2 := testUser(t, "batch", 20)
		u3 := testUser(t, "web", 30)
		u3.ExpiresAt = 99
		for _, u := range []User{u1, u2, u3} {
			if err := s.AddUser(ctx, a.PublicKey, u); err != nil {
				t.Fatalf("AddUser: %v", err)
			}
		}
		us, err := s.Users(a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if want := []User{u1, u2, u3}; !reflect.DeepEqual(us, want) {
			t.Errorf("Users = %+v, want %+v (issue order)", us, want)
		}
		web, err := s.UsersNamed(a.PublicKey, "web")
		if err != nil {
			t.Fatal(err)
		}
		if want := []User{u1, u3}; !reflect.DeepEqual(web, want) {
			t.Errorf("UsersNamed(web) = %+v, want %+v", web, want)
		}
		none, err := s.UsersNamed(a.PublicKey, "nobody")
		if err != nil || len(none) != 0 {
			t.Errorf("UsersNamed(nobody) = %+v, %v; want empty", none, err)
		}
		if got, ok := s.User(a.PublicKey, u2.PublicKey); !ok || got != u2 {
			t.Errorf("User(u2) = %+v, %v", got, ok)
		}
		if _, ok := s.User(a.PublicKey, "UNOPE"); ok {
			t.Error("User of unknown key found something")
		}

		// Re-issuing a key under a new name replaces its record and moves
		// it between names.
		u1b := u1
		u1b.Name = "batch"
		u1b.IssuedAt = 40
		if err := s.AddUser(ctx, a.PublicKey, u1b); err != nil {
			t.Fatal(err)
		}
		web, _ = s.UsersNamed(a.PublicKey, "web")
		if want := []User{u3}; !reflect.DeepEqual(web, want) {
			t.Errorf("UsersNamed(web) after re-issue = %+v, want %+v", web, want)
		}
		batch, _ := s.UsersNamed(a.PublicKey, "batch")
		if want := []User{u2, u1b}; !reflect.DeepEqual(batch, want) {
			t.Errorf("UsersNamed(batch) after re-issue = %+v, want %+v", batch, want)
		}
		us, _ = s.Users(a.PublicKey)
		if len(us) != 3 {
			t.Errorf("re-issue added a record: %+v", us)
		}
	})

	t.Run("returned users are copies", func(t *testing.T) {
		a := accts["bravo"]
		us, _ := s.Users(a.PublicKey)
		us[0].Name = "mutated"
		again, _ := s.Users(a.PublicKey)
		if again[0].Name == "mutated" {
			t.Error("Users returns the store's own slice")
		}
	})

	t.Run("delete", func(t *testing.T) {
		a := accts["delta"]
		if err := s.DeleteAccount(ctx, a.PublicKey); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Account(a.PublicKey); ok {
			t.Error("deleted account still found by key")
		}
		if _, ok := s.AccountByName("delta"); ok {
			t.Error("deleted account still found by name")
		}
		if _, err := s.Users(a.PublicKey); !errors.Is(err, ErrNotFound) {
			t.Errorf("Users of deleted account: %v, want ErrNotFound", err)
		}
		// The name is free again.
		b := testAccount(t, "delta")
		if err := s.PutAccount(ctx, b); err != nil {
			t.Errorf("reuse of a deleted name: %v", err)
		}
	})
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	a := testAccount(t, "taken")
	if err := s.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	other := testAccount(t, "taken")
	renamed := a
	renamed.Name = "other-name"

	tests := []struct {
		name string
		op   func() error
		want error // nil: any non-nil error
	}{
		{"put name owned by another key", func() error { return s.PutAccount(ctx, other) }, ErrConflict},
		{"delete unknown", func() error { return s.DeleteAccount(ctx, other.PublicKey) }, ErrNotFound},
		{"add user to unknown account", func() error { return s.AddUser(ctx, other.PublicKey, testUser(t, "u", 1)) }, ErrNotFound},
		{"users of unknown account", func() error { _, err := s.Users(other.PublicKey); return err }, ErrNotFound},
		{"users named of unknown account", func() error { _, err := s.UsersNamed(other.PublicKey, "u"); return err }, ErrNotFound},
		{"rename", func() error { return s.PutAccount(ctx, renamed) }, nil},
		{"no name", func() error { return s.PutAccount(ctx, Account{PublicKey: other.PublicKey}) }, nil},
		{"no key", func() error { return s.PutAccount(ctx, Account{Name: "x"}) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	// None of the refused changes touched the state.
	if got, _ := s.AccountByName("taken"); got.PublicKey != a.PublicKey {
		t.Errorf("name now owned by %s", got.PublicKey)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d after refused changes", s.Len())
	}

	t.Run("closed", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		for name, err := range map[string]error{
			"put":    s.PutAccount(ctx, testAccount(t, "late")),
			"delete": s.DeleteAccount(ctx, a.PublicKey),
			"user":   s.AddUser(ctx, a.PublicKey, testUser(t, "late", 1)),
		} {
			if !errors.Is(err, ErrClosed) {
				t.Errorf("%s after Close: %v, want ErrClosed", name, err)
			}
		}
	})
}

// fill writes a few accounts, users and a delete, and returns the state.
func fill(t testing.TB, s *DirStore) state {
	t.Helper()
	ctx := context.Background()
	var keep []Account
	for i := range 5 {
		a := testAccount(t, fmt.Sprintf("acct-%d", i))
		if err := s.PutAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		keep = append(keep, a)
		for j := range 3 {
			if err := s.AddUser(ctx, a.PublicKey, testUser(t, fmt.Sprintf("user-%d", j%2), int64(j))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.DeleteAccount(ctx, keep[2].PublicKey); err != nil {
		t.Fatal(err)
	}
	st := snapshotOf(t, s)
	if len(st.Accounts) != 4 {
		t.Fatalf("fill: %d accounts, want 4", len(st.Accounts))
	}
	return st
}

func TestPersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := open(t, dir, Options{})
	want := fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, Options{})
	assertSameState(t, snapshotOf(t, s), want)
	// The name index survives too.
	for _, a := range want.Accounts {
		if got, ok := s.AccountByName(a.Name); !ok || got.PublicKey != a.PublicKey {
			t.Errorf("AccountByName(%s) after reopen = %+v, %v", a.Name, got, ok)
		}
		web, err := s.UsersNamed(a.PublicKey, "user-0")
		if err != nil || len(web) != 2 {
			t.Errorf("UsersNamed(user-0) after reopen = %+v, %v; want 2", web, err)
		}
	}
	// Changes after a reopen (journal on top of a snapshot) are kept too.
	ctx := context.Background()
	extra := testAccount(t, "extra")
	if err := s.PutAccount(ctx, extra); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAccount(ctx, want.Accounts[0].PublicKey); err != nil {
		t.Fatal(err)
	}
	want2 := snapshotOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	assertSameState(t, snapshotOf(t, s), want2)
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	want := fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	jpath := filepath.Join(dir, journalFile)
	data, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		t.Fatal("journal is empty after writes")
	}
	// Half of a real record, without its newline, as a crash mid-write
	// leaves it.
	line, err := encodeRecord(record{Op: opPut, Account: new(testAccount(t, "torn"))})
	if err != nil {
		t.Fatal(err)
	}
	appendFile(t, jpath, line[:len(line)/2])

	var logs bytes.Buffer
	s, err = Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Open with a torn last record: %v", err)
	}
	assertSameState(t, snapshotOf(t, s), want)
	if _, ok := s.AccountByName("torn"); ok {
		t.Error("the torn record was applied")
	}
	if !strings.Contains(logs.String(), "torn") {
		t.Errorf("no warning about the torn record in the log: %s", logs.String())
	}
	// The store goes on working and keeps what it writes next.
	ctx := context.Background()
	after := testAccount(t, "after")
	if err := s.PutAccount(ctx, after); err != nil {
		t.Fatal(err)
	}
	want = snapshotOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	assertSameState(t, snapshotOf(t, s), want)
}

func TestDamagedLastLineWithNewline(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	want := fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(dir, journalFile), []byte("0badc0de {\"op\":\"put\"}\n"))
	s = open(t, dir, Options{})
	defer s.Close()
	assertSameState(t, snapshotOf(t, s), want)
}

func TestDamagedMiddleLine(t *testing.T) {
	tests := []struct {
		name   string
		damage func(line []byte) []byte
	}{
		{"flipped byte", func(l []byte) []byte {
			l = slices.Clone(l)
			l[len(l)/2] ^= 0x01
			return l
		}},
		{"half a line", func(l []byte) []byte { return append(slices.Clone(l[:len(l)/2]), '\n') }},
		{"no checksum", func(l []byte) []byte { return []byte("{\"op\":\"put\"}\n") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			// Write the journal directly: the first record damaged, a valid
			// one after it.
			first, err := encodeRecord(record{Op: opPut, Account: new(testAccount(t, "first"))})
			if err != nil {
				t.Fatal(err)
			}
			second, err := encodeRecord(record{Op: opPut, Account: new(testAccount(t, "second"))})
			if err != nil {
				t.Fatal(err)
			}
			// Sanity: undamaged, the two lines open fine.
			good := t.TempDir()
			writeFile(t, filepath.Join(good, journalFile), append(slices.Clone(first), second...))
			gs := open(t, good, Options{})
			if gs.Len() != 2 {
				t.Fatalf("undamaged journal gave %d accounts", gs.Len())
			}
			gs.Close()

			writeFile(t, filepath.Join(dir, journalFile), append(tt.damage(first), second...))
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a journal damaged before its last record")
			}
			if !strings.Contains(err.Error(), "line 1") {
				t.Errorf("error does not name the damaged line: %v", err)
			}
		})
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	// An existing directory with a looser mode is tightened.
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{})
	fill(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The journal holds records; opening compacts it into a snapshot.
	s = open(t, dir, Options{})
	defer s.Close()
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{filepath.Join(dir, journalFile), 0o600},
		{filepath.Join(dir, snapshotFile), 0o600},
	} {
		st, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != c.want {
			t.Errorf("%s has mode %v, want %v", filepath.Base(c.path), st.Mode(), c.want)
		}
	}
	// No temp file is left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != journalFile && e.Name() != snapshotFile {
			t.Errorf("unexpected file %s in the store directory", e.Name())
		}
	}
}

func TestSeedsNeverPrint(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := testAccount(t, "secret")
	if err := s.PutAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	seeds := []string{string(a.IdentitySeed), string(a.SigningSeeds[0])}
	if !strings.HasPrefix(seeds[0], "SA") {
		t.Fatalf("test account seed %q... is not an account seed", seeds[0][:2])
	}

	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	log.Info("stored", "account", a, "seed", a.IdentitySeed, "ptr", &a)
	// Not checked here: slog.NewJSONHandler renders a struct with
	// encoding/json, which writes the seeds out (see the report).

	outputs := map[string]string{
		"fmt":       fmt.Sprintf("%v %s %+v %#v %v %q", a, a.IdentitySeed, a, a, &a, a.SigningSeeds),
		"slog text": buf.String(),
		"error":     fmt.Errorf("wrapping %v", a).Error(),
	}
	for name, out := range outputs {
		for _, seed := range seeds {
			if strings.Contains(out, seed) {
				t.Errorf("%s output contains a seed: %s", name, out)
			}
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s output has no redaction placeholder: %s", name, out)
		}
	}

	// The store itself keeps the seeds: they are what it is for.
	journal, err := os.ReadFile(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range seeds {
		if !bytes.Contains(journal, []byte(seed)) {
			t.Error("the journal does not hold the seed")
		}
	}
	s = open(t, dir, Options{})
	defer s.Close()
	got, _ := s.Account(a.PublicKey)
	if got.IdentitySeed != a.IdentitySeed || !slices.Equal(got.SigningSeeds, a.SigningSeeds) {
		t.Error("seeds did not survive a reopen")
	}
	kp, err := nkeys.FromSeed(got.IdentitySeed.Bytes())
	if err != nil {
		t.Fatalf("stored seed is unusable: %v", err)
	}
	if pub, _ := kp.PublicKey(); pub != a.PublicKey {
		t.Errorf("stored seed gives %s, want %s", pub, a.PublicKey)
	}
	snap, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(snap, []byte(seeds[0])) {
		t.Error("the snapshot does not hold the seed")
	}
}

func TestCompactionAtRuntime(t *testing.T) {
	const compact = 4096
	dir := t.TempDir()
	var logs bytes.Buffer
	s := open(t, dir, Options{CompactBytes: compact, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	a := testAccount(t, "big")
	if err := s.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Each user record is ~150 bytes; 100 of them pass the threshold
	// several times.
	for i := range 100 {
		if err := s.AddUser(ctx, a.PublicKey, testUser(t, fmt.Sprintf("u%d", i%7), int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := s.PutAccount(ctx, testAccount(t, fmt.Sprintf("more-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if end := journalEnd(t, filepath.Join(dir, journalFile)); end > compact+1024 {
		t.Errorf("journal holds %d bytes of records after compaction at %d", end, compact)
	}
	if _, err := os.Stat(filepath.Join(dir, snapshotFile)); err != nil {
		t.Errorf("no snapshot after runtime compaction: %v", err)
	}
	if !strings.Contains(logs.String(), "compacted") {
		t.Errorf("no compaction logged: %s", logs.String())
	}
	want := snapshotOf(t, s)
	if n := len(want.Users[a.PublicKey]); n != 100 {
		t.Fatalf("%d users, want 100", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{CompactBytes: compact})
	defer s.Close()
	assertSameState(t, snapshotOf(t, s), want)
}

func TestConcurrentWriters(t *testing.T) {
	const n = 50
	dir := t.TempDir()
	s := open(t, dir, Options{CompactBytes: 16 << 10})
	ctx := context.Background()
	accts := make([]Account, n)
	users := make([]User, n)
	for i := range n {
		accts[i] = testAccount(t, fmt.Sprintf("c-%02d", i))
		users[i] = testUser(t, "u", int64(i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if err := s.PutAccount(ctx, accts[i]); err != nil {
				errs <- fmt.Errorf("put %d: %w", i, err)
				return
			}
			if err := s.AddUser(ctx, accts[i].PublicKey, users[i]); err != nil {
				errs <- fmt.Errorf("user %d: %w", i, err)
			}
			// Readers run alongside the writers.
			s.Accounts()
			s.UsersNamed(accts[i].PublicKey, "u")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if s.Len() != n {
		t.Fatalf("%d accounts after reopen, want %d", s.Len(), n)
	}
	for i := range n {
		got, ok := s.Account(accts[i].PublicKey)
		if !ok || !reflect.DeepEqual(got, accts[i]) {
			t.Errorf("account %d after reopen: %+v, %v", i, got, ok)
		}
		us, err := s.Users(accts[i].PublicKey)
		if err != nil || len(us) != 1 || us[0] != users[i] {
			t.Errorf("users of %d after reopen: %+v, %v", i, us, err)
		}
	}
}

func TestConcurrentSameName(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		s := open(t, t.TempDir(), Options{})
		a := testAccount(t, "contested")
		b := testAccount(t, "contested")
		start := make(chan struct{})
		var errA, errB error
		var wg sync.WaitGroup
		wg.Go(func() { <-start; errA = s.PutAccount(ctx, a) })
		wg.Go(func() { <-start; errB = s.PutAccount(ctx, b) })
		close(start)
		wg.Wait()

		var winner Account
		switch {
		case errA == nil && errors.Is(errB, ErrConflict):
			winner = a
		case errB == nil && errors.Is(errA, ErrConflict):
			winner = b
		default:
			t.Fatalf("round %d: errors %v and %v; want exactly one ErrConflict", round, errA, errB)
		}
		if got, ok := s.AccountByName("contested"); !ok || got.PublicKey != winner.PublicKey {
			t.Fatalf("round %d: name owned by %+v, want the winner %s", round, got, winner.PublicKey)
		}
		if s.Len() != 1 {
			t.Fatalf("round %d: %d accounts", round, s.Len())
		}
		s.Close()
	}
}

func TestContextCancelledWait(t *testing.T) {
	// A caller that stops waiting gets its context's error; the record is
	// still written whole or not at all.
	dir := t.TempDir()
	s := open(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := testAccount(t, "maybe")
	err := s.PutAccount(ctx, a)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("PutAccount with a cancelled context: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{})
	defer s.Close()
	if got, ok := s.Account(a.PublicKey); ok && !reflect.DeepEqual(got, a) {
		t.Errorf("partly written account: %+v", got)
	}
	// Close waited for the pending write, so it is there.
	if _, ok := s.Account(a.PublicKey); !ok {
		t.Error("a record submitted before Close was lost")
	}
}

// appendFile writes data where the journal's next record would go: after
// its last record, over the zeroed space.
func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, journalEnd(t, path)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// journalEnd returns the offset past the journal's last record: where its
// zeroed space begins, or its size.
func journalEnd(t testing.TB, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return int64(i)
	}
	return int64(len(data))
}

// TestTornTailOnEmptyJournal: a crash during the first write after a start
// leaves a torn record at the very start of the journal; what is written
// after the next start must survive the one after.
func TestTornTailOnEmptyJournal(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := open(t, dir, Options{})
	if err := s.PutAccount(ctx, testAccount(t, "a")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{}) // compacts: the journal is empty now
	s.Close()
	line, _ := encodeRecord(record{Op: opPut, Account: new(testAccount(t, "torn"))})
	appendFile(t, filepath.Join(dir, journalFile), line[:len(line)/2])
	s = open(t, dir, Options{})
	b, c := testAccount(t, "b"), testAccount(t, "c")
	if err := s.PutAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAccount(ctx, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for _, x := range []Account{b, c} {
		if _, ok := s.Account(x.PublicKey); !ok {
			t.Errorf("acknowledged account %s lost", x.Name)
		}
	}
	if _, ok := s.AccountByName("torn"); ok {
		t.Errorf("the torn record was applied")
	}
}

// TestAccountLogValueHidesSeeds: the JSON handler marshals values, so the
// account must redact itself.
func TestAccountLogValueHidesSeeds(t *testing.T) {
	a := testAccount(t, "a")
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "account", a)
	if strings.Contains(buf.String(), string(a.IdentitySeed)) || strings.Contains(buf.String(), string(a.SigningSeeds[0])) {
		t.Errorf("a seed reached the JSON log: %s", buf.String())
	}
	if !strings.Contains(buf.String(), a.PublicKey) {
		t.Errorf("the public key is missing from the log: %s", buf.String())
	}
}

// TestFailedBatchKeepsUserRecords: a batch whose write fails puts the user
// records it carried back, and the next batch must not write over them.
// The journal is swapped for a read-only handle while the committer is
// idle (each swap happens before a submit, which orders it).
func TestFailedBatchKeepsUserRecords(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	ctx := context.Background()
	a := testAccount(t, "a")
	if err := s.PutAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	good := s.commit.j
	ro, err := os.Open(filepath.Join(dir, journalFile))
	if err != nil {
		t.Fatal(err)
	}
	b := testAccount(t, "b")
	line, _ := encodeRecord(record{Op: opPut, Account: &b})
	s.commit.j = ro // committer idle
	n := 0
	for {
		if err := s.AddUser(ctx, a.PublicKey, testUser(t, "u", int64(n))); err != nil {
			t.Fatal(err)
		}
		n++
		s.mu.RLock()
		spare := cap(s.lazy) - len(s.lazy)
		s.mu.RUnlock()
		if spare >= len(line) && n > 3 {
			break
		}
	}
	if err := s.PutAccount(ctx, b); err == nil {
		t.Fatal("put b should fail")
	}
	s.commit.j = good
	c := testAccount(t, "c")
	if err := s.PutAccount(ctx, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	us, _ := s2.Users(a.PublicKey)
	if len(us) != n {
		t.Fatalf("users after reopen %d, want %d", len(us), n)
	}
}

package filestore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

var (
	operatorOnce sync.Once
	operatorKP   nkeys.KeyPair
)

func operator(t testing.TB) nkeys.KeyPair {
	t.Helper()
	operatorOnce.Do(func() {
		kp, err := nkeys.CreateOperator()
		if err != nil {
			panic(err)
		}
		operatorKP = kp
	})
	return operatorKP
}

// newAccount makes a live account with real keys: an identity seed, one
// signing seed, and an account JWT signed by the test operator that lists
// the signing key.
func newAccount(t testing.TB, name string) provision.Account {
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
	skPub, _ := sk.PublicKey()
	skSeed, _ := sk.Seed()
	return provision.Account{
		PublicKey:    pub,
		Name:         name,
		IdentitySeed: provision.Seed(idSeed),
		SigningKeys:  []provision.SigningKey{{Seed: provision.Seed(skSeed)}},
		JWT:          accountJWT(t, pub, name, skPub),
		Phase:        provision.PhaseLive,
	}
}

func accountJWT(t testing.TB, pub, name string, signers ...string) string {
	t.Helper()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(signers...)
	token, err := ac.Encode(operator(t))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// tombstone is a's deleted form in the given phase: no seeds, a JWT of its
// own, and a deletion time.
func tombstone(t testing.TB, a provision.Account, phase provision.Phase) provision.Account {
	t.Helper()
	a.Phase = phase
	a.IdentitySeed = ""
	a.SigningKeys = nil
	a.JWT = accountJWT(t, a.PublicKey, a.Name)
	a.DeletedAt = 1700000000
	return a
}

// newUser makes a user record with a real user key.
func newUser(t testing.TB, account, name string, issued int64) provision.User {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	// Tags, recorded, so that every round trip through the store checks
	// that they come back.
	return provision.User{PublicKey: pub, Account: account, Name: name, IssuedAt: issued, Tags: []string{"team:" + name, "site:x"}, TagsRecorded: true}
}

func newSealSeed(t testing.TB) []byte {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	return seed
}

func newSealKey(t testing.TB, previous ...[]byte) *seal.Key {
	t.Helper()
	k, err := seal.New(newSealSeed(t), previous...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func open(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func closeStore(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// dump is everything observable of a store, for comparing two.
type dump struct {
	Accounts []provision.Account
	Users    map[string][]provision.User
}

func dumpOf(t testing.TB, s *Store) dump {
	t.Helper()
	ctx := context.Background()
	accts, err := s.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	d := dump{Accounts: accts, Users: map[string][]provision.User{}}
	for _, a := range accts {
		got, err := s.Account(ctx, a.PublicKey)
		if err != nil || !reflect.DeepEqual(got, a) {
			t.Fatalf("Account(%s) = %+v, %v; Accounts lists %+v", a.PublicKey, got, err, a)
		}
		if a.Live() {
			byName, err := s.AccountByName(ctx, a.Name)
			if err != nil || byName.PublicKey != a.PublicKey {
				t.Fatalf("AccountByName(%q) = %s, %v; want %s", a.Name, byName.PublicKey, err, a.PublicKey)
			}
		}
		us, err := s.Users(ctx, a.PublicKey)
		if err != nil {
			t.Fatalf("Users(%s): %v", a.PublicKey, err)
		}
		for _, u := range us {
			got, err := s.User(ctx, u.PublicKey)
			if err != nil || !got.Equal(u) {
				t.Fatalf("User(%s) = %+v, %v; want %+v", u.PublicKey, got, err, u)
			}
		}
		if len(us) > 0 {
			d.Users[a.PublicKey] = us
		}
	}
	return d
}

func assertDump(t testing.TB, got, want dump) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("state differs\n got: %s\nwant: %s", describe(got), describe(want))
	}
}

func describe(d dump) string {
	var b bytes.Buffer
	for _, a := range d.Accounts {
		fmt.Fprintf(&b, "\n  %s %q %s rev %d signing %d users %d", a.PublicKey[:8], a.Name, a.Phase, a.Revision, len(a.SigningKeys), len(d.Users[a.PublicKey]))
	}
	return b.String()
}

// logBuffer is a logger writing into a buffer, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slogTo(b), b
}

func slogTo(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// fill builds a small store with every kind of record: live accounts with
// users (lazy and durable), an update, a tombstone, a removed account. It
// closes the store and returns what it holds.
func fill(t testing.TB, s *Store, prefix string) dump {
	t.Helper()
	ctx := context.Background()
	var accts []provision.Account
	var revs []uint64
	for i := range 3 {
		a := newAccount(t, fmt.Sprintf("%s-%d", prefix, i))
		rev, err := s.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		accts, revs = append(accts, a), append(revs, rev)
		for j := range 2 {
			if err := s.AddUser(ctx, newUser(t, a.PublicKey, fmt.Sprintf("user-%d", j), int64(j)), j == 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	a := accts[0]
	a.JWT = accountJWT(t, a.PublicKey, a.Name+"-changed", mustPub(t, a.SigningKeys[0].Seed))
	if _, err := s.UpdateAccount(ctx, a, revs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateAccount(ctx, tombstone(t, accts[1], provision.PhaseDisabled), revs[1]); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAccount(ctx, accts[2].PublicKey, revs[2]); err != nil {
		t.Fatal(err)
	}
	d := dumpOf(t, s)
	closeStore(t, s)
	return d
}

func mustPub(t testing.TB, seed provision.Seed) string {
	t.Helper()
	kp, err := nkeys.FromSeed(seed.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// smallStore writes a store whose snapshot holds a filled state and whose
// journal holds a second filled state's records on top, and returns that
// state.
func smallStore(t testing.TB, dir string) dump {
	t.Helper()
	fill(t, open(t, dir, Options{}), "old")
	s := open(t, dir, Options{}) // folds the journal into the snapshot
	return fill(t, s, "new")
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces a file. It removes it first: ext4 flushes a file that
// was truncated and written again when it is closed, which would make
// tests that write thousands of files slow.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// files returns the contents of a store's state files.
func files(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, n := range []string{snapshotFile, journalFile} {
		out[n] = readFile(t, filepath.Join(dir, n))
	}
	return out
}

// restore puts a store's files back as they were, and nothing else.
func restore(t testing.TB, dir string, fs map[string][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := fs[e.Name()]; !ok && e.Name() != lockFile {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for n, b := range fs {
		writeFile(t, filepath.Join(dir, n), b)
	}
}

// journalEnd returns the committed length of a journal.
func journalEnd(t testing.TB, data []byte) int64 {
	t.Helper()
	s, _, ok := pickSlot(data)
	if !ok {
		t.Fatal("journal has no valid header")
	}
	return s.end
}

// lineStarts returns the offsets at which the lines of data[from:to] start.
func lineStarts(data []byte, from, to int64) []int64 {
	out := []int64{from}
	for i := from; i < to; i++ {
		if data[i] == '\n' && i+1 < to {
			out = append(out, i+1)
		}
	}
	return out
}

// fastDisk makes flushes free and the journal small, for tests that open a
// store thousands of times and test nothing about durability.
func fastDisk(t testing.TB) {
	t.Helper()
	sync, chunk := syncFile, journalChunk
	syncFile = func(*os.File, bool) error { return nil }
	journalChunk = 16 << 10
	t.Cleanup(func() { syncFile, journalChunk = sync, chunk })
}

// reopenHolds opens the store in dir again (after a crash, or once there
// is room) and checks that it holds want, and every account of made, the
// changes acknowledged before; when says after what, for the errors. It
// returns the store, which the test's cleanup closes.
func reopenHolds(t *testing.T, dir string, want dump, made []provision.Account, when string) *Store {
	t.Helper()
	s := open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
	for _, a := range made {
		if _, err := s.Account(context.Background(), a.PublicKey); err != nil {
			t.Errorf("acknowledged account %s %s: %v", a.Name, when, err)
		}
	}
	return s
}

// smallJournal makes the journals a test's stores start and grow by size
// bytes instead of 4 MiB, so that a test reaches the end of a chunk (a
// full disk, a file size limit) in a few writes; the size is put back
// when the test ends. The tests that use it are not parallel.
func smallJournal(t *testing.T, size int64) {
	chunk := journalChunk
	journalChunk = size
	t.Cleanup(func() { journalChunk = chunk })
}

package kvstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// makeBucket makes the default bucket's stream, R1, as Open would make
// it, changed by edit first: a bucket an earlier version, or an operator,
// made, for a store opened on it. It returns the config made, for a test
// that edits the stream again.
func makeBucket(t testing.TB, js jetstream.JetStream, edit func(*jetstream.StreamConfig)) jetstream.StreamConfig {
	t.Helper()
	cfg := (&Store{opts: Options{Bucket: "provisioner"}, subject: "$KV.provisioner."}).streamConfig(1)
	edit(&cfg)
	if _, err := js.CreateStream(bg(t), cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newSealKey makes a seal key from a new curve key.
func newSealKey(t testing.TB) (*seal.Key, []byte) {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	k, err := seal.New(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k, seed
}

// logBuffer collects log records for tests that assert on a warning or an
// error; they also go to the test log.
type logBuffer struct {
	t   testing.TB
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLog(t testing.TB) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{t: t}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// openStore opens a store and closes it when the test ends.
func openStore(t testing.TB, nc *nats.Conn, opts Options) *Store {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger, _ = newLog(t)
	}
	// As the service does (service.openKV), an Open that finds JetStream
	// unavailable (a cluster electing its meta leader after a kill -9 can
	// take tens of seconds on a loaded machine) is tried again.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Open(ctx, nc, opts)
		cancel()
		if err == nil {
			t.Cleanup(func() { s.Close() })
			return s
		}
		if !errors.Is(err, provision.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("Open: %v", err)
		}
		t.Logf("Open: %v; trying again", err)
		time.Sleep(250 * time.Millisecond)
	}
}

// testOperator signs the account JWTs of test accounts.
var testOperator = func() nkeys.KeyPair {
	kp, err := nkeys.CreateOperator()
	if err != nil {
		panic(err)
	}
	return kp
}()

// accountJWTAt signs an account JWT with the given iat (jwt.Encode always
// writes the current time, and Migrate compares iats).
func accountJWTAt(t testing.TB, pub, name string, iat int64) string {
	t.Helper()
	c := jwt.NewAccountClaims(pub)
	c.Name = name
	c.IssuedAt = iat
	c.Issuer, _ = testOperator.PublicKey()
	c.Type = jwt.AccountClaim
	c.Version = 2
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(payload)
	c.ID = base64.RawURLEncoding.EncodeToString(h[:])
	if payload, err = json.Marshal(c); err != nil {
		t.Fatal(err)
	}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`))
	body := header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sig, err := testOperator.Sign([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	tok := body + "." + base64.RawURLEncoding.EncodeToString(sig)
	if back, err := jwt.DecodeAccountClaims(tok); err != nil || back.IssuedAt != iat {
		t.Fatalf("test JWT does not decode: %v", err)
	}
	return tok
}

// newAccount makes a live account with real keys: an identity seed and
// two signing seeds, one with a role.
func newAccount(t testing.TB, name string) provision.Account {
	t.Helper()
	mk := func() (string, provision.Seed) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		return pub, provision.Seed(seed)
	}
	pub, id := mk()
	_, sk1 := mk()
	_, sk2 := mk()
	return provision.Account{
		PublicKey:    pub,
		Name:         name,
		IdentitySeed: id,
		SigningKeys:  []provision.SigningKey{{Seed: sk1}, {Seed: sk2, Role: "admin"}},
		JWT:          accountJWTAt(t, pub, name, time.Now().Unix()),
		Phase:        provision.PhaseLive,
	}
}

// newUser makes a user record of an account with a new user key.
func newUser(t testing.TB, account, name string) provision.User {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	// Tags, recorded, so that every round trip through the store checks
	// that they come back.
	return provision.User{PublicKey: pub, Account: account, Name: name, IssuedAt: time.Now().Unix(), Tags: []string{"team:" + name, "site:x"}, TagsRecorded: true}
}

// tombstone is a as a deleted account keeps it: no seeds.
func tombstone(t testing.TB, a provision.Account, p provision.Phase, iat int64) provision.Account {
	t.Helper()
	a.IdentitySeed = ""
	a.SigningKeys = nil
	a.Phase = p
	a.DeletedAt = time.Now().Unix()
	a.JWT = accountJWTAt(t, a.PublicKey, a.Name, iat)
	return a
}

// eventually waits up to d for cond.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// mirrorRevision is the revision of an account in a store's mirror, 0
// when it holds none: what reads see without going to the bucket.
func mirrorRevision(s *Store, pub string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.m.accounts[pub]; e != nil {
		return e.a.Revision
	}
	return 0
}

// acmeStore opens a store logging to lb on a new one-server deployment d
// (sealed with k) and creates account acme (a) in it.
func acmeStore(t testing.TB) (d *deployment, k *seal.Key, s *Store, lb *logBuffer, ctx context.Context, a provision.Account) {
	t.Helper()
	d = startDeployment(t, 1)
	k, _ = newSealKey(t)
	log, lb := newLog(t)
	s = openStore(t, d.connect(t, d.svcCreds), Options{Seal: k, Logger: log})
	ctx = bg(t)
	a = newAccount(t, "acme")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	return d, k, s, lb, ctx, a
}

// deleteBucket deletes s's bucket under it (a jetstream client of d's
// service user, which it returns, does).
func deleteBucket(ctx context.Context, t testing.TB, d *deployment, s *Store) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteKeyValue(ctx, s.opts.Bucket); err != nil {
		t.Fatal(err)
	}
	return js
}

// removedNameInNewBucket writes into other, a store on the bucket made
// again, entries past revision watched (the old bucket's), then another
// account's name entry for name and its removal (by hand), then one more
// entry, whose revision it returns: what a store that follows the new
// bucket would take for a name to write back.
func removedNameInNewBucket(ctx context.Context, t testing.TB, other *Store, name string, watched uint64) (uint64, error) {
	b := newAccount(t, "other")
	for i := uint64(0); i <= watched; i++ {
		if _, err := other.kv.Put(ctx, fmt.Sprintf("lease.pad%d", i), []byte("x")); err != nil {
			return 0, err
		}
	}
	if _, err := other.kv.Put(ctx, nameKey(name), []byte(b.PublicKey)); err != nil {
		return 0, err
	}
	if err := other.kv.Delete(ctx, nameKey(name)); err != nil {
		return 0, err
	}
	return other.kv.Put(ctx, "lease.last", []byte("x"))
}

// noNameEntry fails the test if kv (the bucket made again) holds a name
// entry for name: who wrote it there, its log in lb.
func noNameEntry(ctx context.Context, t testing.TB, kv jetstream.KeyValue, name, who string, lb *logBuffer) {
	t.Helper()
	if e, err := kv.Get(ctx, nameKey(name)); err == nil {
		t.Fatalf("%s wrote %s -> %s into the new bucket:\n%s", who, e.Key(), e.Value(), lb.String())
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
}

func bg(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// bucketUser reads a user's record from the bucket itself, as a store
// opened on it would show it: the user's own user. key (a delete marker
// there: removed), else the pack stored first that holds the key.
func bucketUser(ctx context.Context, s *Store, pub string) (provision.User, error) {
	return bucketUserIn(ctx, s, nil, pub)
}

// bucketUserIn is bucketUser with the packs already read (nil: read them).
func bucketUserIn(ctx context.Context, s *Store, packs map[uint64][]provision.User, pub string) (provision.User, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+userKey(pub))
	switch {
	case err == nil && m.Header.Get(kvOperationHeader) != "":
		return provision.User{}, fmt.Errorf("user %s: removed: %w", pub, jetstream.ErrKeyNotFound)
	case err == nil:
		return decodeUser(userKey(pub), m.Data)
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return provision.User{}, err
	}
	if packs == nil {
		if packs, err = bucketPacks(ctx, s); err != nil {
			return provision.User{}, err
		}
	}
	var found *provision.User
	var first uint64
	for rev, users := range packs {
		for _, u := range users {
			if u.PublicKey == pub && (found == nil || rev < first) {
				found, first = &u, rev
			}
		}
	}
	if found == nil {
		return provision.User{}, fmt.Errorf("user %s: %w", pub, jetstream.ErrKeyNotFound)
	}
	return *found, nil
}

// bucketPacks reads the packs of user records the bucket holds, by
// revision.
func bucketPacks(ctx context.Context, s *Store) (map[uint64][]provision.User, error) {
	out := map[uint64][]provision.User{}
	l, err := s.kv.ListKeysFiltered(ctx, packPrefix+">")
	if err != nil {
		return nil, err
	}
	for key := range l.Keys() {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		users, err := decodePack(key, e.Value())
		if err != nil {
			return nil, err
		}
		out[e.Revision()] = users
	}
	return out, nil
}

// inProcess waits until the stream leader holds a write of key in process
// (on a replicated bucket whose followers are paused): a probe at a
// revision the key never had is refused with 10164 then, 10071 (and not
// stored) otherwise.
func inProcess(ctx context.Context, t testing.TB, s *Store, key string) {
	t.Helper()
	subject := s.subject + key
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := s.js.PublishMsg(ctx, nats.NewMsg(subject), jetstream.WithExpectLastSequencePerSubject(1<<62))
		if busy(err) {
			return
		}
		if err == nil {
			t.Fatal("the probe was stored")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first write of %s is not in process on the stream leader: %v", key, err)
		}
	}
}

// behindHeldWrite runs first, a write of key through s, with the stream's
// followers paused (replicatedPair's pause and resume), waits until the
// stream leader holds it in process, and then runs then, given the
// revision first is to be given. then must not end while the followers
// are paused (its answer would be a guess); they are let go after 3 s of
// it. first must be given that revision; behindHeldWrite returns it and
// then's result.
func behindHeldWrite(ctx context.Context, t *testing.T, s *Store, key string, pause, resume func(), first func() (uint64, error), then func(given uint64) (uint64, error)) (uint64, uint64, error) {
	t.Helper()
	info, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	given := info.State.LastSeq + 1
	pause()
	type result struct {
		rev uint64
		err error
	}
	firstDone := make(chan result, 1)
	go func() {
		rev, err := first()
		firstDone <- result{rev, err}
	}()
	inProcess(ctx, t, s, key)
	thenDone := make(chan result, 1)
	go func() {
		rev, err := then(given)
		thenDone <- result{rev, err}
	}()
	var r2 result
	select {
	case r2 = <-thenDone:
		resume()
		t.Fatalf("a write of %s ended while an earlier one was in process: %d, %v", key, r2.rev, r2.err)
	case <-time.After(3 * time.Second):
	}
	resume()
	r1 := <-firstDone
	r2 = <-thenDone
	if r1.err != nil || r1.rev != given {
		t.Fatalf("the first write of %s: %d, %v; want revision %d", key, r1.rev, r1.err, given)
	}
	return r1.rev, r2.rev, r2.err
}

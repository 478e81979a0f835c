package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/jsbatch"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/testenv"
)

// TestPackedUserRecords: asynchronous user records that queue up reach
// the bucket many to a pack, a durable one gets a key of its own, and a new
// store on the bucket lists them all: the asynchronous ones in the order
// they were added, the durable one, written first of what was gathered
// with it, before them.
func TestPackedUserRecords(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "many")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	const n = 400
	users := make([]provision.User, n)
	for i := range users {
		users[i] = newUser(t, a.PublicKey, "u")
	}
	// The batch loop is held while the records queue up, as it is while
	// a server's syncs fall behind; one adder at a time, so that the issue
	// order is known. The last add is durable and waits for its write.
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	for _, u := range users[:n-1] {
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
	}
	// The loop is let go once the durable record is queued too: let go
	// before, it may write the packs before the durable add (which reads
	// the packs first) has queued its record.
	durable := make(chan error, 1)
	go func() { durable <- s.AddUser(ctx, users[n-1], true) }()
	eventually(t, 10*time.Second, "the durable record queued behind the others", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.queue) == n
	})
	close(gate)
	if err := <-durable; err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every record is confirmed", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.pending) == 0
	})

	packs, err := bucketPacks(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	packed := 0
	for _, p := range packs {
		packed += len(p)
	}
	if packed != n-1 || len(packs) > 2 {
		t.Fatalf("%d packs hold %d records, want the %d asynchronous ones in one or two", len(packs), packed, n-1)
	}
	for _, u := range users[:n-1] {
		if _, err := s.stream.GetLastMsgForSubject(ctx, s.subject+userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrMsgNotFound) {
			t.Fatalf("a packed record has a key of its own too: %v", err)
		}
	}
	if _, err := s.kv.Get(ctx, userKey(users[n-1].PublicKey)); err != nil {
		t.Fatalf("the durable record: %v, want a key of its own", err)
	}

	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: opts.Seal, Instance: "two"})
	got, err := s2.Users(ctx, a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("a new store lists %d users, want %d", len(got), n)
	}
	want := append([]provision.User{users[n-1]}, users[:n-1]...)
	for i := range got {
		if !got[i].Equal(want[i]) {
			t.Fatalf("user %d in the bucket is %s, want %s", i, got[i].PublicKey, want[i].PublicKey)
		}
	}
}

// TestBatchedDurableRecords: durable user records that queue up reach the
// bucket in atomic batches (the stored messages carry a batch id, many
// share one), each with a key of its own.
func TestBatchedDurableRecords(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	if !s.atomicBatches {
		t.Fatal("a bucket this store created does not allow atomic batches")
	}
	a := newAccount(t, "durable")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	const n = 2 * minBatch
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	users := make([]provision.User, n)
	errs := make(chan error, n)
	for i := range users {
		users[i] = newUser(t, a.PublicKey, "d")
		go func() { errs <- s.AddUser(ctx, users[i], true) }()
	}
	eventually(t, 10*time.Second, "every record queued", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.queue) == n
	})
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	batches := map[string]int{}
	for _, u := range users {
		m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+userKey(u.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jsbatch.IDHeader); id != "" {
			batches[id]++
		}
	}
	largest := 0
	for _, c := range batches {
		largest = max(largest, c)
	}
	if largest < minBatch {
		t.Fatalf("no %d records shared a batch (%d batches, the largest of %d)", minBatch, len(batches), largest)
	}
}

// TestBatchWithTakenKey: a batch one of whose keys another instance
// stored meanwhile is refused whole by the server; every other record of
// it is still stored, on its own, and the taken key keeps the other
// record, the loss logged as an error naming the key.
func TestBatchWithTakenKey(t *testing.T) {
	_, s, _, logA, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "contended")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	other := newUser(t, a.PublicKey, "stored-first")
	mine := other
	mine.Name = "mine"
	// The pending writes as AddUser makes them, mine expecting the key
	// to be free as the mirror saw it; the other instance stores its
	// record just after.
	var batch []*pendingWrite
	var fresh []provision.User
	s.mu.Lock()
	s.amu.Lock()
	for i := range 20 {
		u := newUser(t, a.PublicKey, "fresh")
		if i == 10 {
			u = mine
		} else {
			fresh = append(fresh, u)
		}
		p := &pendingWrite{key: userKey(u.PublicKey), data: mustJSON(t, u), entry: s.m.putUser(u, true)}
		s.pending[p.key] = p
		batch = append(batch, p)
	}
	s.amu.Unlock()
	s.mu.Unlock()
	if _, err := s.kv.Create(ctx, userKey(other.PublicKey), mustJSON(t, other)); err != nil {
		t.Fatal(err)
	}

	s.writeBatch(batch)

	for _, u := range fresh {
		eventually(t, 10*time.Second, "each other record of the refused batch is stored", func() bool {
			e, err := s.kv.Get(ctx, userKey(u.PublicKey))
			return err == nil && string(e.Value()) == string(mustJSON(t, u))
		})
	}
	e, err := s.kv.Get(ctx, userKey(other.PublicKey))
	if err != nil || string(e.Value()) != string(mustJSON(t, other)) {
		t.Fatalf("the taken key holds %q, %v; want the record stored first", e.Value(), err)
	}
	eventually(t, 10*time.Second, "the lost record is logged as an error naming the key", func() bool {
		return strings.Contains(logA.String(), `level=ERROR msg="kvstore: user key was issued twice`) && strings.Contains(logA.String(), userKey(mine.PublicKey))
	})
	eventually(t, 10*time.Second, "the mirror shows the record stored first", func() bool {
		got, err := s.User(ctx, other.PublicKey)
		return err == nil && got.Equal(other)
	})
}

// TestUnbatchedBucket: a bucket made without atomic batches (by an
// earlier version) still takes every user record, and keeps the records in
// the background, and the durable ones, each in the order they were added.
func TestUnbatchedBucket(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	makeBucket(t, js, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish, c.AllowDirect = false, false })
	ctx := bg(t)
	log, logs := newLog(t)
	s := openStore(t, nc, Options{Seal: key, Instance: "one", Logger: log})
	if s.atomicBatches {
		t.Fatal("the store uses atomic batches on a stream that does not allow them")
	}
	if !strings.Contains(logs.String(), "--allow-direct") {
		t.Errorf("the log does not say how to allow direct gets:\n%s", logs)
	}
	a := newAccount(t, "plain")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Reads past the mirror go through the JetStream API.
	if got, err := s.LatestJWT(ctx, a.PublicKey); err != nil || got != a.JWT {
		t.Fatalf("LatestJWT without direct gets: %v, want the account's JWT", err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := s.AddUser(ctx, newUser(t, a.PublicKey, "u"), false); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "two"})
	if got, err := s2.Users(context.Background(), a.PublicKey); err != nil || len(got) != 50 {
		t.Fatalf("Users: %d, %v; want 50", len(got), err)
	}

	b := newAccount(t, "ordered")
	if _, err := s2.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	var added []provision.User
	for i := range 20 {
		u := newUser(t, b.PublicKey, "o")
		if err := s2.AddUser(ctx, u, i%4 == 3); err != nil {
			t.Fatal(err)
		}
		added = append(added, u)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "three"})
	got, err := s3.Users(ctx, b.PublicKey)
	if err != nil || len(got) != len(added) {
		t.Fatalf("Users: %d, %v; want %d", len(got), err, len(added))
	}
	kind := func(list []provision.User, durable bool) []provision.User {
		var out []provision.User
		for _, u := range list {
			i := slices.IndexFunc(added, func(a provision.User) bool { return a.Equal(u) })
			if (i%4 == 3) == durable {
				out = append(out, u)
			}
		}
		return out
	}
	for _, durable := range []bool{false, true} {
		if g, w := kind(got, durable), kind(added, durable); !slices.EqualFunc(g, w, provision.User.Equal) {
			t.Fatalf("durable=%t: the bucket lists %d users out of issue order", durable, len(g))
		}
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heldBatch makes an account and queues three batches' worth of its
// users' records on s while the batch loop is held; closing gate lets it
// go.
func heldBatch(t *testing.T, s *Store) (chan struct{}, []provision.User) {
	t.Helper()
	ctx := context.Background()
	a := newAccount(t, "batched")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	var users []provision.User
	for range 3 * minBatch {
		u := newUser(t, a.PublicKey, "u")
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	return gate, users
}

// TestServerDownDuringBatch: the server goes away with a batch of user
// records about to be sent; the batch fails, its records are tried again
// one by one, and once the server is back every one is stored, which a
// new store on the bucket shows after Close waited for them.
func TestServerDownDuringBatch(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: 20 * time.Second}
	s := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := context.Background()
	gate, users := heldBatch(t, s)
	d.nodes[0].emb.Stop()
	close(gate)
	time.Sleep(time.Second) // the batch fails; the retries run
	d.restart(t, "n1")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := openStore(t, d.connect(t, d.svcCreds), opts)
	for _, u := range users {
		if got, err := check.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
			t.Fatalf("user %s after the outage: %v, %v", u.PublicKey, got, err)
		}
	}
}

// TestServerPausedDuringBatch: the server (a process) is paused
// (SIGSTOP) with a pack of user records on its way, long past the store's
// timeout, then resumed. The pack's answer never comes in time, so its
// records go to the retry path, whose writes time out too; the paused
// server then stores the pack after all, and the records the retries
// write one by one say the same: none is logged as issued twice, Close
// confirms them all, and a new store shows each user once.
func TestServerPausedDuringBatch(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a nats-server process")
	}
	d := startProcesses(t, 1)
	key, _ := newSealKey(t)
	log, logs := newLog(t)
	opts := Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: 20 * time.Second, Logger: log}
	s := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := context.Background()
	gate, users := heldBatch(t, s)
	proc := d.nodes[0].cmd.Process
	testenv.Pause(t, proc)
	resumed := false
	defer func() {
		if !resumed {
			_ = proc.Signal(syscall.SIGCONT)
		}
	}()
	s.gatherHook.Store(nil)
	close(gate)
	time.Sleep(2 * time.Second) // the batch times out; the retries time out too
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if strings.Contains(logs.String(), "issued twice") {
		t.Fatal("a record the paused batch stored was taken for another's")
	}
	check := openStore(t, d.connect(t, d.svcCreds), opts)
	for _, u := range users {
		if got, err := check.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
			t.Fatalf("user %s after the pause: %v, %v", u.PublicKey, got, err)
		}
	}
	if listed, err := check.Users(ctx, users[0].Account); err != nil || len(listed) != len(users) {
		t.Fatalf("a new store lists %d users, %v; want each of the %d once", len(listed), err, len(users))
	}
	if !strings.Contains(logs.String(), "stored after retrying") {
		t.Error("no record went through the retry path: the pause did not outlast the batch's answer")
	}
}

// TestDurableGivenUpIsNotStoredLater: a durable add whose caller gave up
// while its record waited for the batch loop is answered as not stored
// (ErrUnavailable): the loop must not store it afterwards, or the caller's
// retry of that key would find it taken.
func TestDurableGivenUpIsNotStoredLater(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	u := newUser(t, a.PublicKey, "caller-key")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := s.AddUser(short, u, true)
	cancel()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the batch loop held: %v, want ErrUnavailable", err)
	}
	s.gatherHook.Store(nil)
	close(gate)
	eventually(t, 5*time.Second, "the batch loop took what was queued", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.queue) == 0 && len(s.queueRoom) == 0
	})
	if _, err := bucketUser(ctx, s, u.PublicKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the record of a durable add answered as not stored is in the bucket: %v", err)
	}
	if err := s.AddUser(ctx, u, true); err != nil {
		t.Fatalf("retrying a durable add that was answered ErrUnavailable: %v", err)
	}
}

// TestDurableAddDuringRemove: on a bucket without atomic batches a durable
// record is created on its own. An add that checked its account before
// the account's removal creates the record after the removal, and its
// store's watcher brought the account's delete marker before the create
// returned (the removal's listing did not have the user). The record is
// a stray: the store removes it, and does not show it.
func TestDurableAddDuringRemove(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	makeBucket(t, js, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish, c.AllowDirect = false, false })
	ctx := bg(t)
	s := openStore(t, nc, Options{Seal: key, Instance: "one"})
	a := newAccount(t, "removed")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "late")
	removed := false
	s.fault = func(p string) error {
		if p != "add user: account checked" || removed {
			return nil
		}
		removed = true
		if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
			t.Errorf("remove: %v", err)
		}
		eventually(t, 5*time.Second, "the watcher applied the account's delete marker", func() bool {
			s.mu.RLock()
			defer s.mu.RUnlock()
			return s.m.revs[accountKey(a.PublicKey)] > rev
		})
		// Held, so that the create's answer comes before the watcher
		// brings the record (as it often does).
		release := stallWatcher(t, s, s)
		// Let go once the create's answer was applied (the add may
		// then wait for the held stray loop).
		go func() {
			eventually(t, 5*time.Second, "the record applied by its writer", func() bool {
				s.mu.RLock()
				defer s.mu.RUnlock()
				return s.m.revs[userKey(u.PublicKey)] > 0
			})
			release()
		}()
		return nil
	}
	if err := s.AddUser(ctx, u, true); err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	s.fault = nil
	eventually(t, 5*time.Second, "the user of the removed account gone from the mirror and the bucket", func() bool {
		_, err := bucketUser(ctx, s, u.PublicKey)
		return !shows(s, u) && errors.Is(err, jetstream.ErrKeyNotFound)
	})
}

// TestDurableGivenUpAsItsBatchFailed: a durable add whose caller gives up
// just as its batch fails (here: refused whole for another record's key,
// taken meanwhile), its outcome on its way, is answered as not stored. Its
// key must then be free: the caller's retry of it is stored. The write
// stayed pending for as long as the store ran, each retry of the key
// answered ErrConflict.
func TestDurableGivenUpAsItsBatchFailed(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "unlucky")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	users := make([]provision.User, minBatch)
	errs := make(chan error, len(users))
	for i := range users {
		users[i] = newUser(t, a.PublicKey, "d")
		go func() { errs <- s.AddUser(ctx, users[i], true) }()
	}
	victim := newUser(t, a.PublicKey, "victim")
	vctx, giveUp := context.WithCancel(ctx)
	defer giveUp()
	verr := make(chan error, 1)
	go func() { verr <- s.AddUser(vctx, victim, true) }()
	eventually(t, 10*time.Second, "every record queued", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.queue) == len(users)+1
	})
	// Another instance takes the first record's key: the batch is
	// refused whole.
	if _, err := s.kv.Create(ctx, userKey(users[0].PublicKey), mustJSON(t, users[0])); err != nil {
		t.Fatal(err)
	}
	// The victim's caller gives up; before it looks at its record, the
	// batch goes and fails.
	once := func() {
		s.gatherHook.Store(nil)
		close(gate)
		eventually(t, 10*time.Second, "the batch answered", func() bool {
			s.amu.Lock()
			defer s.amu.Unlock()
			p := s.pending[userKey(victim.PublicKey)]
			return p != nil && p.answered
		})
	}
	s.givenUpHook.Store(&once)
	giveUp()
	// Not a 500 for another record's key: not stored, retry.
	if err := <-verr; !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("a durable add whose caller gave up as its batch failed for another record: got %v, want ErrUnavailable (not stored)", err)
	}
	s.givenUpHook.Store(nil)
	for range users {
		<-errs
	}
	if err := s.AddUser(ctx, victim, true); err != nil {
		t.Fatalf("retrying a durable add answered as not stored: %v", err)
	}
}

// TestDurableGivenUpWaitingForQueueRoomIsNotWritten: a durable add whose
// caller gives up while it waits for room in the batch loop's full queue
// (the loop behind a slow server) is answered as not stored
// (ErrUnavailable). It must not be written then: it was written on its
// own at once, after its caller had gone, and withdrawn later, so for a
// while the bucket held, and every instance listed and counted, a user
// whose creds nobody got (for good after a kill -9 before the
// withdrawal), and the overloaded server took one more write.
func TestDurableGivenUpWaitingForQueueRoomIsNotWritten(t *testing.T) {
	_, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "crowded")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// The queue is full: maxQueued records wait for the loop.
	for range maxQueued {
		s.queueRoom <- struct{}{}
	}
	u := newUser(t, a.PublicKey, "caller-key")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := s.AddUser(short, u, true)
	cancel()
	for range maxQueued {
		<-s.queueRoom
	}
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the queue full: %v, want ErrUnavailable", err)
	}
	eventually(t, 5*time.Second, "nothing of the key pending", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return s.pending[userKey(u.PublicKey)] == nil
	})
	if m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		op := ""
		if m != nil {
			op = m.Header.Get(kvOperationHeader)
		}
		t.Fatalf("a durable add answered as not stored while it waited for queue room wrote its key (last entry %q, %v): its record was stored after its caller had gone", op, err)
	}
	if err := s.AddUser(ctx, u, true); err != nil {
		t.Fatalf("retrying: %v", err)
	}
}

// TestRevokedBeforeItsRecordIsNotIssuedTwice: another instance revoked a
// key this one issued (a revoke by key that found no record yet, which
// records the key as revoked, never issued there) before this instance's
// record of it, written in the background, was stored. The record's write
// finds the key taken, and this was logged at ERROR as a key issued
// twice, which it is not: the key was issued once, and revoked. It is
// logged at INFO as that, and the revoked record is kept.
func TestRevokedBeforeItsRecordIsNotIssuedTwice(t *testing.T) {
	_, s, _, logA, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "revoked-first")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	mine := newUser(t, a.PublicKey, "device")
	revoked := provision.User{PublicKey: mine.PublicKey, Account: a.PublicKey, IssuedAt: time.Now().Unix(), Revoked: true}
	var batch []*pendingWrite
	s.mu.Lock()
	s.amu.Lock()
	for _, u := range []provision.User{newUser(t, a.PublicKey, "fresh"), mine} {
		p := &pendingWrite{key: userKey(u.PublicKey), data: mustJSON(t, u), entry: s.m.putUser(u, true)}
		s.pending[p.key] = p
		batch = append(batch, p)
	}
	s.amu.Unlock()
	s.mu.Unlock()
	if _, err := s.kv.Create(ctx, userKey(revoked.PublicKey), mustJSON(t, revoked)); err != nil {
		t.Fatal(err)
	}

	s.writeBatch(batch)

	eventually(t, 10*time.Second, "the mirror shows the revoked record", func() bool {
		got, err := s.User(ctx, mine.PublicKey)
		return err == nil && got.Revoked
	})
	eventually(t, 10*time.Second, "the write that found the revoked record is logged", func() bool {
		return strings.Contains(logA.String(), "revoked") && strings.Contains(logA.String(), userKey(mine.PublicKey))
	})
	if strings.Contains(logA.String(), "issued twice") {
		t.Errorf("a key revoked on another instance before this one's record of it was stored was logged as issued twice:\n%s", logA)
	}
}

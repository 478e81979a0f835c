package kvstore

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/jsbatch"
	"github.com/natsprov/provisioner/provision"
)

// countCommits counts the atomic batches sent to the bucket's subjects,
// refused or not: each ends with its commit, which a subscriber of the
// subjects sees as any publish.
func countCommits(t *testing.T, d *deployment, s *Store) (commits func() int64) {
	t.Helper()
	nc := d.connect(t, d.svcCreds)
	var n atomic.Int64
	sub, err := nc.Subscribe(s.subject+">", func(m *nats.Msg) {
		if m.Header.Get(jsbatch.IDHeader) != "" && m.Header.Get("Nats-Batch-Commit") != "" {
			n.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int64 {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return n.Load()
	}
}

// changeBucket changes the bucket's stream's configuration while s runs,
// as `nats stream edit` does.
func changeBucket(t *testing.T, s *Store, change func(*jetstream.StreamConfig)) {
	t.Helper()
	ctx := bg(t)
	info, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	change(&cfg)
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// addDurableWindow adds n durable users of account at once while the
// batch loop is held, so that they go as one window of a batch's worth,
// and fails unless each is stored.
func addDurableWindow(t *testing.T, s *Store, account string, n int) []provision.User {
	t.Helper()
	ctx := bg(t)
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	users := make([]provision.User, n)
	errs := make(chan error, n)
	for i := range users {
		users[i] = newUser(t, account, "d")
		go func() { errs <- s.AddUser(ctx, users[i], true) }()
	}
	eventually(t, 10*time.Second, "every record queued", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.queue) == n
	})
	s.gatherHook.Store(nil)
	close(gate)
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a durable add to a bucket that allows no batches: %v", err)
		}
	}
	for _, u := range users {
		if got, err := bucketUser(ctx, s, u.PublicKey); err != nil || !got.Equal(u) {
			t.Fatalf("user %s in the bucket: %v, %v", u.PublicKey, got, err)
		}
	}
	return users
}

// TestBucketBatchesOffAreRemembered: an operator turns atomic publishes
// off on the bucket's stream (allow_atomic false) while the store runs.
// Every window of a batch's worth of durable records cost a batch the
// stream refused before each record was written on its own, and nothing
// said why; the store now remembers the refusal, says it once, and
// writes the windows after it one by one.
func TestBucketBatchesOffAreRemembered(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	log, logs := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "one", Logger: log})
	a := newAccount(t, "unbatched")
	if _, err := s.CreateAccount(bg(t), a); err != nil {
		t.Fatal(err)
	}
	commits := countCommits(t, d, s)
	changeBucket(t, s, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	const rounds = 4
	for range rounds {
		addDurableWindow(t, s, a.PublicKey, 2*minBatch)
	}
	if n := commits(); n != 1 {
		t.Errorf("%d batches sent to a bucket that allows none, over %d windows of a batch's worth; want 1, the one that found out", n, rounds)
	}
	if n := strings.Count(logs.String(), "refused an atomic batch as it allows none"); n != 1 || !strings.Contains(logs.String(), "--allow-batch") {
		t.Errorf("the refusal is logged %d times, want once, naming --allow-batch:\n%s", n, logs)
	}
}

// largestBatch is the most of users stored in one atomic batch.
func largestBatch(t *testing.T, s *Store, users []provision.User) int {
	t.Helper()
	ctx := bg(t)
	batches := map[string]int{}
	largest := 0
	for _, u := range users {
		m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+userKey(u.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if id := m.Header.Get(jsbatch.IDHeader); id != "" {
			batches[id]++
			largest = max(largest, batches[id])
		}
	}
	return largest
}

// TestBucketBatchesComeBack: once the time the store remembers a refusal
// has passed, it tries a batch again, which a bucket that allows them
// again stores.
func TestBucketBatchesComeBack(t *testing.T) {
	// Not parallel: it shortens the time for the stores opened in it.
	defer func(old time.Duration) { batchesOffFor = old }(batchesOffFor)
	batchesOffFor = 200 * time.Millisecond
	d, s, _ := single(t)
	a := newAccount(t, "unbatched")
	if _, err := s.CreateAccount(bg(t), a); err != nil {
		t.Fatal(err)
	}
	commits := countCommits(t, d, s)
	changeBucket(t, s, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	if users := addDurableWindow(t, s, a.PublicKey, 2*minBatch); largestBatch(t, s, users) != 0 || commits() != 1 {
		t.Fatalf("%d batches sent, a batch stored, to a bucket that allows none; want 1 sent, none stored", commits())
	}
	changeBucket(t, s, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = true })
	time.Sleep(batchesOffFor)
	if users := addDurableWindow(t, s, a.PublicKey, 2*minBatch); largestBatch(t, s, users) < minBatch {
		t.Fatalf("no %d records shared a batch once the bucket allowed them again", minBatch)
	}
}

// TestBucketBatchesTurnedOn: an operator turns atomic publishes on on the
// bucket's stream while a store opened without them runs. It goes on
// writing user records one by one (batches from its next start), each
// stored, with no batch sent and nothing logged as failed.
func TestBucketBatchesTurnedOn(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	makeBucket(t, js, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
	ctx := bg(t)
	log, logs := newLog(t)
	s := openStore(t, nc, Options{Seal: key, Instance: "one", Logger: log})
	a := newAccount(t, "turned-on")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	commits := countCommits(t, d, s)
	changeBucket(t, s, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = true })
	errs := make(chan error, 2*minBatch)
	var users []provision.User
	for i := range 2 * minBatch {
		u := newUser(t, a.PublicKey, "u")
		users = append(users, u)
		go func() { errs <- s.AddUser(ctx, u, i%2 == 0) }()
	}
	for range users {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "two"})
	if got, err := check.Users(ctx, a.PublicKey); err != nil || len(got) != len(users) {
		t.Fatalf("a new store lists %d users, %v; want %d", len(got), err, len(users))
	}
	if n := commits(); n != 0 {
		t.Errorf("%d batches sent by a store opened on a bucket without them", n)
	}
	if strings.Contains(logs.String(), "level=WARN msg=\"kvstore: asynchronous") || strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("user writes failed:\n%s", logs)
	}
}

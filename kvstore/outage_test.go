package kvstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestServerDown: while the server is down, writes fail with
// ErrUnavailable and reads are served from the mirror; asynchronous user
// adds are accepted and stored once it is back; Close waits for them.
func TestServerDown(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: 20 * time.Second}
	nc := d.connect(t, d.svcCreds)
	s := openStore(t, nc, opts)
	ctx := context.Background() // each call is bounded by Options.Timeout
	a := newAccount(t, "steady")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	a.Revision = rev

	d.nodes[0].emb.Stop()
	writesUnavailable(t, s, a)
	if got, err := s.Account(ctx, a.PublicKey); err != nil || got.Revision != rev {
		t.Fatalf("Account from the mirror with the server down: %v", err)
	}
	var async []provision.User
	for range 50 {
		u := newUser(t, a.PublicKey, "async")
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatalf("asynchronous AddUser with the server down: %v", err)
		}
		async = append(async, u)
	}
	if users, _ := s.UsersNamed(ctx, a.PublicKey, "async"); len(users) != 50 {
		t.Fatalf("asynchronous adds not visible at once: %d", len(users))
	}
	time.Sleep(time.Second) // past the acknowledgement timeout: the retries run

	d.restart(t, "n1")
	var lastErr error
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := s.UpdateAccount(ctx, a, rev)
		if err == nil || errors.Is(err, provision.ErrStale) {
			break
		}
		if lastErr == nil || err.Error() != lastErr.Error() {
			t.Logf("after the restart: %v (connection %v)", err, nc.Status())
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("writes do not work 20s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	check := openStore(t, d.connect(t, d.svcCreds), opts)
	for _, u := range async {
		if got, err := check.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
			t.Fatalf("asynchronous add %s after the outage: %v", u.PublicKey, err)
		}
	}
}

// TestCloseIsBounded: Close gives up on asynchronous adds it cannot
// store within CloseTimeout, and says how many.
func TestCloseIsBounded(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	log, _ := newLog(t)
	s, err := Open(bg(t), d.connect(t, d.svcCreds), Options{Seal: key, Timeout: 200 * time.Millisecond, CloseTimeout: 500 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	a := newAccount(t, "x")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	d.nodes[0].emb.Stop()
	for range 3 {
		if err := s.AddUser(ctx, newUser(t, a.PublicKey, "u"), false); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "3 user records not confirmed") {
		t.Fatalf("Close: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Close took %v with a CloseTimeout of 500ms", took)
	}
}

// TestCloseIsBoundedWithAQueue: Close with thousands of background records
// queued while the server is down stops the batch loop once it gives up,
// instead of letting it try each pack for another Timeout.
func TestCloseIsBoundedWithAQueue(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	log, _ := newLog(t)
	s, err := Open(bg(t), d.connect(t, d.svcCreds), Options{Seal: key, Timeout: time.Second, CloseTimeout: 500 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	a := newAccount(t, "x")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	d.nodes[0].emb.Stop()
	// All queued before the loop takes any: several chunks, several packs
	// each.
	gate := make(chan struct{})
	hold := func() { <-gate }
	s.gatherHook.Store(&hold)
	const n = 3000
	for range n {
		if err := s.AddUser(ctx, newUser(t, a.PublicKey, "u"), false); err != nil {
			t.Fatal(err)
		}
	}
	close(gate)
	start := time.Now()
	err = s.Close()
	if err == nil || !strings.Contains(err.Error(), "user records not confirmed") {
		t.Fatalf("Close: %v", err)
	}
	// CloseTimeout, then at most the one write in flight (Timeout): 1.5 s,
	// and room for a loaded machine (3.4 s at a load of 8); unbounded, it
	// waited a Timeout for each of the records' writes.
	took := time.Since(start)
	if took > 6*time.Second {
		t.Fatalf("Close took %v with a CloseTimeout of 500ms and a Timeout of 1s", took)
	}
	t.Logf("Close with %d records queued and the server down: %v", n, took.Round(time.Millisecond))
}

// TestUnreadableRecord: a record this store cannot open (another instance
// sealed it with a key this one lacks) fails the reads of it, naming it,
// instead of being shown without seeds.
func TestUnreadableRecord(t *testing.T) {
	d := startDeployment(t, 1)
	k1, _ := newSealKey(t)
	k2, _ := newSealKey(t)
	sa := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k1})
	sb := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k2})
	ctx := bg(t)
	a := newAccount(t, "foreign")
	if _, err := sb.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a's mirror has the record", func() bool {
		_, err := sa.Account(ctx, a.PublicKey)
		return err != nil && strings.Contains(err.Error(), accountKey(a.PublicKey))
	})
	if _, err := sa.Accounts(ctx); err == nil {
		t.Fatal("Accounts with an unreadable record succeeded")
	}
	if _, err := sa.UpdateAccount(ctx, a, 1); err == nil || errors.Is(err, provision.ErrStale) {
		t.Fatalf("UpdateAccount of an unreadable record: %v", err)
	}
}

// TestRemoveDuringOutage: an account whose users' records are still on
// their way (written while the server is down) cannot be removed until
// they are stored: the remove fails with ErrUnavailable and changes
// nothing; once the server is back, the records land and the remove
// takes them with it, so none outlives the account (for another store
// opening the bucket too).
func TestRemoveDuringOutage(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: 20 * time.Second}
	s := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := context.Background()
	a := newAccount(t, "going-offline")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	d.nodes[0].emb.Stop()
	var users []provision.User
	for range 100 {
		u := newUser(t, a.PublicKey, "u")
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("RemoveAccount with records still on their way and the server down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Account(ctx, a.PublicKey); err != nil {
		t.Fatalf("the account after a refused remove: %v", err)
	}
	d.restart(t, "n1")
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := s.RemoveAccount(ctx, a.PublicKey, rev)
		if err == nil {
			break
		}
		if !errors.Is(err, provision.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatalf("RemoveAccount after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Read the bucket itself: a store's open would sweep up records of a
	// gone account and hide them.
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "provisioner")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, err := kv.Get(ctx, userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("user %s after the remove: %v, want no record", u.PublicKey, err)
		}
	}
	if _, err := kv.Get(ctx, accountKey(a.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the account's record after the remove: %v", err)
	}
}

// TestServerDownWithoutAReconnectBuffer: on a connection whose reconnect
// buffer is off or full, a write made while the server is away is refused
// by nats.go at once (ErrReconnectBufExceeded). It was never sent, so it
// is as unavailable as one that timed out (503, retry), not a failure of
// its own (500).
func TestServerDownWithoutAReconnectBuffer(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	s := openStore(t, d.connect(t, d.svcCreds, nats.ReconnectBufSize(-1)), Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: 5 * time.Second})
	ctx := context.Background()
	a := newAccount(t, "steady")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	a.Revision = rev
	d.nodes[0].emb.Stop()
	writesUnavailable(t, s, a)
}

// writesUnavailable checks that, with the server away, a create, an update
// of a (at a.Revision) and a durable user add fail with ErrUnavailable.
func writesUnavailable(t *testing.T, s *Store, a provision.Account) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateAccount(ctx, newAccount(t, "new")); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("CreateAccount with the server down: %v, want ErrUnavailable", err)
	}
	if _, err := s.UpdateAccount(ctx, a, a.Revision); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("UpdateAccount with the server down: %v, want ErrUnavailable", err)
	}
	if err := s.AddUser(ctx, newUser(t, a.PublicKey, "durable"), true); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("durable AddUser with the server down: %v, want ErrUnavailable", err)
	}
}

// TestCloseLeavesNoSubscription: the connection belongs to the caller and
// stays open after Close (the migrate and reseal commands open a store,
// close it and go on). The JetStream contexts' reply subscription for
// asynchronous acknowledgements, made by the first background write (a
// user record written alone, a removal's delete markers), stayed on it after
// Close with its goroutine: one more per store opened and closed on the
// connection.
func TestCloseLeavesNoSubscription(t *testing.T) {
	d := startDeployment(t, 1)
	nc := d.connect(t, d.svcCreds)
	key, _ := newSealKey(t)
	// The connection's own subscription for replies to requests, made
	// by its first request, is the connection's.
	_, _ = nc.Request("no.one.listens", nil, 100*time.Millisecond)
	before := nc.NumSubscriptions()
	s, err := Open(bg(t), nc, Options{Seal: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	a := newAccount(t, "x")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.AddUser(ctx, newUser(t, a.PublicKey, "u"), false); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for nc.NumSubscriptions() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := nc.NumSubscriptions(); n > before {
		t.Errorf("%d subscriptions on the connection after Close, %d before Open", n, before)
	}
}

// TestWatchdogLogsStreamUnreadable: while the bucket's stream does not
// answer the watchdog, the mirror cannot notice or read what it missed,
// and reads may be stale. The watchdog's failures went unlogged: an
// operator saw nothing. It warns once when they start and says when the
// stream answers again, not once a second.
func TestWatchdogLogsStreamUnreadable(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	log, lb := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Timeout: 500 * time.Millisecond, CloseTimeout: time.Second, Logger: log})
	_ = s
	d.nodes[0].emb.Stop()
	const warn = "kvstore: the watchdog cannot read the bucket's stream"
	eventually(t, 10*time.Second, "the watchdog's warning", func() bool { return strings.Contains(lb.String(), warn) })
	time.Sleep(3 * watchdogInterval)
	if n := strings.Count(lb.String(), warn); n != 1 {
		t.Fatalf("the watchdog's warning logged %d times in 3 intervals of an outage, want once", n)
	}
	d.restart(t, "n1")
	const back = "kvstore: the watchdog reads the bucket's stream again"
	eventually(t, 20*time.Second, "the watchdog's all-clear", func() bool { return strings.Contains(lb.String(), back) })
}

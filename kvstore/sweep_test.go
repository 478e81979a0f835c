package kvstore

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSweepKeepsUsersOfAnAccountUpdatedDuringOpen opens a store while
// another instance keeps updating an account and writing other entries.
// The watcher's initial values end once as many entries were delivered as
// were pending when it started, new ones counted: an account record
// replaced after that start (history 1 removes the old message) and
// delivered after a newer entry is not in the loaded mirror, while its
// users are. The sweep must not take them for users of a removed account.
func TestSweepKeepsUsersOfAnAccountUpdatedDuringOpen(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	// Longer than bg's 30 s: 3,000 synced writes and an Open under load
	// ran past it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := newAccount(t, "busy")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for i := range 5 {
		u := newUser(t, a.PublicKey, "u")
		u.Name = string(rune('a' + i))
		if err := s.AddUser(ctx, u, true); err != nil {
			t.Fatal(err)
		}
		users = append(users, u.PublicKey)
	}
	b := newAccount(t, "other")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Entries between the users and the account's record, so that a
	// watcher takes a while to reach the record.
	var futures []jetstream.PubAckFuture
	for range 3000 {
		u := newUser(t, b.PublicKey, "pad")
		data, _ := json.Marshal(u)
		m := nats.NewMsg(s.subject + userKey(u.PublicKey))
		m.Data = data
		f, err := s.bulkJS.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}

	// Another instance: an entry, then the account again, over and over.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			u := newUser(t, b.PublicKey, "z")
			data, _ := json.Marshal(u)
			if _, err := s.kv.Create(ctx, userKey(u.PublicKey), data); err != nil {
				t.Error(err)
				return
			}
			r, err := s.UpdateAccount(ctx, a, rev)
			if err != nil {
				t.Error(err)
				return
			}
			rev = r
		}
	})
	defer wg.Wait()
	defer close(stop)

	for try := range 10 {
		s2 := openStore(t, d.connect(t, d.svcCreds), opts)
		s2.Close()
		for _, pub := range users {
			if _, err := s.kv.Get(ctx, userKey(pub)); err != nil {
				t.Fatalf("open %d: a user of a live account was removed: %v", try+1, err)
			}
		}
	}
}

// TestSweepKeepsALiveAccountWhoseNameMovedDuringOpen: an account record
// whose name entry, as the store loaded it, points elsewhere looks left
// behind by a create that lost its name, and the sweep removed it. But a
// fenced create or a revive rewrites the name entry to point to its record
// after the record: written after the watcher's initial values began, it
// can be missing from the loaded mirror while the record is there. The
// sweep removed a live account's record, seeds and all. It now reads the
// name entry from the bucket first.
func TestSweepKeepsALiveAccountWhoseNameMovedDuringOpen(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "moved")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	other := newAccount(t, "elsewhere")
	// As the store will load it: the name entry points to another key.
	if _, err := s.kv.Put(ctx, nameKey(a.Name), []byte(other.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// Between the load and the sweep, as a fence's write after the
	// watcher's initial values: the name entry points to the record again.
	orig := beforeSweep
	beforeSweep = func() {
		if _, err := s.kv.Put(ctx, nameKey(a.Name), []byte(a.PublicKey)); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { beforeSweep = orig })
	openStore(t, d.connect(t, d.svcCreds), opts)
	beforeSweep = orig
	if _, err := s.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the record of a live account whose name entry points to it: %v, want it kept", err)
	}
}

package kvstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestFullBucket: the service account's JetStream limit is lowered below
// what the bucket needs. Writes fail with ErrFull, naming disk_storage,
// and change nothing. User records acknowledged before the bucket filled
// are not given up on: once the bucket has room again (the limit raised)
// every one of them is stored. While it is full, AddUser writes before it
// returns, so that a caller is refused before it hands out creds, rather
// than issuing a user whose record is then lost.
func TestFullBucket(t *testing.T) {
	t.Parallel()
	d, s, _ := single(t)
	ctx := bg(t)
	a := newAccount(t, "tenant")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	sys := d.connect(t, d.sysCreds)
	push := func(jwt string) {
		t.Helper()
		if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(jwt), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	push(d.svcFull)

	// Users until the bucket is full: those added before it is known to
	// be full are acknowledged at once, then AddUser refuses.
	var acked []provision.User
	var refused error
	for i := 0; i < 2000 && refused == nil; i++ {
		u := newUser(t, a.PublicKey, fmt.Sprint("u", i))
		if err := s.AddUser(ctx, u, false); err != nil {
			refused = err
			if _, err := s.User(ctx, u.PublicKey); !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("a refused user is readable: %v", err)
			}
			break
		}
		acked = append(acked, u)
	}
	if !errors.Is(refused, provision.ErrFull) || !strings.Contains(refused.Error(), "disk_storage") {
		t.Fatalf("AddUser on a full bucket: %v, want ErrFull naming disk_storage", refused)
	}
	s.amu.Lock()
	waiting := len(s.pending)
	s.amu.Unlock()
	if waiting == 0 {
		t.Fatal("no acknowledged record is waiting for room: the test did not fill the bucket under them")
	}
	t.Logf("%d users acknowledged, %d of them waiting for room", len(acked), waiting)

	b := newAccount(t, "no-room")
	if _, err := s.CreateAccount(ctx, b); !errors.Is(err, provision.ErrFull) {
		t.Fatalf("CreateAccount on a full bucket: %v, want ErrFull", err)
	}
	if _, err := s.AccountByName(ctx, b.Name); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the refused account: %v, want not found", err)
	}
	// Removing the account would wait for its users' records, which wait
	// for room an operator must make: refused with ErrFull, before the
	// store's timeout, and nothing of it removed.
	began := time.Now()
	if err := s.RemoveAccount(ctx, a.PublicKey, mirrorRevision(s, a.PublicKey)); !errors.Is(err, provision.ErrFull) {
		t.Fatalf("RemoveAccount with its users' records waiting for room: %v, want ErrFull", err)
	}
	if took := time.Since(began); took >= s.opts.Timeout {
		t.Errorf("RemoveAccount took %v, the store's whole timeout", took)
	}
	if _, err := s.Account(ctx, a.PublicKey); err != nil {
		t.Fatalf("the account after the refused removal: %v", err)
	}
	for _, u := range acked {
		if _, err := s.User(ctx, u.PublicKey); err != nil {
			t.Fatalf("user %s after the refused removal: %v", u.PublicKey, err)
		}
	}
	// Longer than the five attempts (3.1 s) after which other failures
	// are given up.
	time.Sleep(4 * time.Second)

	push(d.svcJWT)
	eventually(t, 20*time.Second, "every acknowledged user record stored", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return len(s.pending) == 0
	})
	packs, err := bucketPacks(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range acked {
		if _, err := bucketUserIn(ctx, s, packs, u.PublicKey); err != nil {
			t.Fatalf("acknowledged user %s not in the bucket: %v", u.PublicKey, err)
		}
	}
	// Room again: users are acknowledged at once, and accounts made.
	if err := s.AddUser(ctx, newUser(t, a.PublicKey, "after"), false); err != nil {
		t.Fatal(err)
	}
	if s.full.Load() {
		t.Error("the store still counts the bucket full")
	}
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatalf("CreateAccount with room again: %v", err)
	}
	if _, err := s.kv.Get(ctx, nameKey(b.Name)); errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal("the name entry is missing")
	}
}

package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/natsprov/provisioner/provision"
)

func TestLeases(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	const ttl = 300 * time.Millisecond
	try := func(s *Store, name string) bool {
		t.Helper()
		ok, err := s.TryLease(ctx, name, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	if !try(sa, "reconcile") {
		t.Fatal("a cannot take a free lease")
	}
	if !try(sa, "reconcile") {
		t.Fatal("a cannot renew its lease")
	}
	// b is refused while a renews, however long b keeps asking.
	for range 6 {
		if try(sb, "reconcile") {
			t.Fatal("b took a lease a holds and renews")
		}
		time.Sleep(ttl / 3)
		if !try(sa, "reconcile") {
			t.Fatal("a lost a lease it renews")
		}
	}
	// a stops renewing: b takes over once it has seen the lease unchanged
	// for the ttl, and not before.
	start := time.Now()
	if try(sb, "reconcile") {
		t.Fatal("b took over at once")
	}
	for !try(sb, "reconcile") {
		time.Sleep(10 * time.Millisecond)
	}
	waited := time.Since(start)
	if waited < ttl {
		t.Fatalf("b took over after %v, before the ttl %v", waited, ttl)
	}
	t.Logf("takeover %v after the first look (ttl %v)", waited, ttl)
	if try(sa, "reconcile") {
		t.Fatal("a renewed a lease b took over")
	}

	// Leases are per name, and a release hands over at once.
	if !try(sa, "account.AABC") {
		t.Fatal("a cannot take a second lease")
	}
	if try(sb, "account.AABC") {
		t.Fatal("b took a held lease")
	}
	if err := sb.ReleaseLease(ctx, "account.AABC"); err != nil {
		t.Fatal(err)
	}
	if try(sb, "account.AABC") {
		t.Fatal("b's release of a's lease released it")
	}
	if err := sa.ReleaseLease(ctx, "account.AABC"); err != nil {
		t.Fatal(err)
	}
	if !try(sb, "account.AABC") {
		t.Fatal("b cannot take a released lease at once")
	}

	// Close releases what a store holds.
	if err := sb.Close(); err != nil {
		t.Fatal(err)
	}
	if !try(sa, "reconcile") || !try(sa, "account.AABC") {
		t.Fatal("a cannot take the leases b held when it closed")
	}

	for _, bad := range []string{"", "a b", "a..b", ".a", "a.*", "a.>"} {
		if _, err := sa.TryLease(ctx, bad, ttl); !errors.Is(err, provision.ErrInvalid) {
			t.Fatalf("TryLease(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := sa.TryLease(ctx, "x", 0); !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("TryLease with ttl 0: %v", err)
	}
}

// TestLeaseSameInstanceName: two stores configured with the same instance
// name still hold leases apart.
func TestLeaseSameInstanceName(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Instance: "same"}
	sa := openStore(t, d.connect(t, d.svcCreds), opts)
	sb := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := bg(t)
	if ok, err := sa.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("a: %v, %v", ok, err)
	}
	if ok, err := sb.TryLease(ctx, "l", time.Minute); ok || err != nil {
		t.Fatalf("b with the same instance name: %v, %v; want refused", ok, err)
	}
}

// TestLeaseRaceReplicated: two stores on an R3 bucket race TryLease for a
// lease the last holder released, many rounds. Each hears "held" or "not
// held"; a write of the other's still being replicated (10164 on a
// replicated stream) is "not held", not "unavailable".
func TestLeaseRaceReplicated(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	d := startDeployment(t, 3)
	key, _ := newSealKey(t)
	sa := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "a", Replicas: 3})
	sb := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "b", Replicas: 3})
	if sa.replicas != 3 {
		t.Fatalf("replicas %d, want 3", sa.replicas)
	}
	stores := []*Store{sa, sb}
	for round := range 200 {
		// A deadline for each round: 200 rounds of R3 writes under one
		// 30 s deadline ran out on a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		var held [2]bool
		var errs [2]error
		var wg sync.WaitGroup
		for i, s := range stores {
			wg.Go(func() { held[i], errs[i] = s.TryLease(ctx, "race", time.Minute) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: store %d: %v", round, i, err)
			}
		}
		if held[0] && held[1] {
			t.Fatalf("round %d: both hold the lease", round)
		}
		for i, s := range stores {
			if held[i] {
				if err := s.ReleaseLease(ctx, "race"); err != nil {
					t.Fatalf("round %d: release: %v", round, err)
				}
			}
		}
	}
}

// TestLeaseReleasedAfterALostAck: a TryLease whose write timed out on a
// replicated bucket (its followers paused), then was stored, took the
// lease; Close releases it, so another instance takes it at once rather
// than after its ttl.
func TestLeaseReleasedAfterALostAck(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	pause()
	short, cancel := context.WithTimeout(ctx, time.Second)
	held, err := sa.TryLease(short, "l", time.Minute)
	cancel()
	resume()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("TryLease with the followers paused: %v, %v; want unavailable", held, err)
	}
	// The write is stored once the followers are back.
	for {
		e, err := sa.kv.Get(ctx, leasePrefix+"l")
		if err == nil {
			var v leaseValue
			if json.Unmarshal(e.Value(), &v) != nil || v.Token != sa.token {
				t.Fatalf("the lease holds %s", e.Value())
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a's lease write never stored: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("b after a closed: %v, %v; want the lease a's Close released", ok, err)
	}
}

// lateWriteKV stores, once armed, a write of the lease key just before
// the next Update of it: a write of this store's own that timed out
// earlier (mayHold) and lands between TryLease's read and its write.
type lateWriteKV struct {
	jetstream.KeyValue
	late func(ctx context.Context)
}

func (k *lateWriteKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if f := k.late; f != nil {
		k.late = nil
		f(ctx)
	}
	return k.KeyValue.Update(ctx, key, value, rev)
}

// TestLeaseReleasedAfterALateOwnWrite: a renewal that finds its revision
// gone because an earlier renewal of this store's own (timed out, stored
// late) moved it still leaves the lease to Close to release: the entry
// carries this store's token, so another instance would otherwise wait a
// whole ttl.
func TestLeaseReleasedAfterALateOwnWrite(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	if ok, err := sa.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("a: %v, %v", ok, err)
	}
	kv := &lateWriteKV{KeyValue: sa.kv}
	kv.late = func(ctx context.Context) {
		data, _ := json.Marshal(leaseValue{Instance: sa.opts.Instance, Token: sa.token, Expires: time.Now().Add(time.Minute).UTC(), TTL: time.Minute})
		if _, err := kv.KeyValue.Put(ctx, leasePrefix+"l", data); err != nil {
			t.Error(err)
		}
	}
	sa.kv = kv
	held, err := sa.TryLease(ctx, "l", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("renewal over the late write: held %v", held)
	if err := sa.Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("b after a closed: %v, %v; want the lease a's Close released", ok, err)
	}
}

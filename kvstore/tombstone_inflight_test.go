package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestTombstoneAgainBehindPendingWriteOfTheKey: the sweep writes back the
// tombstone a revive replaced (tombstoneAgain) at the revision of the
// revive's record as the watcher brought it, and that write can still be
// in process on the leader of a replicated stream (its writer answered
// before clearing it): the leader refuses the write-back with 10164, which
// nats.go reports as a revision mismatch, and the repair failed with a
// warning, the account hidden until another open. A write-back at the
// revision the write in process is given must wait for it and succeed;
// one at a revision that write replaced must still fail as a mismatch.
func TestTombstoneAgainBehindPendingWriteOfTheKey(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	iat := int64(10_000)
	// held creates an account named name, updates it through sa (as a
	// revive writes its record), held in process, and then writes back a
	// tombstone of it through sb at the revision at(created, given) names,
	// given the one sa's update is to be given. It returns the account,
	// the revision of sa's update, and sb's write-back's revision (as its
	// mirror holds it) and error.
	held := func(name string, at func(created, given uint64) uint64) (provision.Account, uint64, uint64, error) {
		t.Helper()
		a := newAccount(t, name)
		rev, err := sa.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "sb's mirror holds "+name, func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
		iat++
		n := a
		n.JWT = accountJWTAt(t, a.PublicKey, a.Name, iat)
		revived := &revivedRecord{Phase: provision.PhaseDeleted, DeletedAt: time.Now().Unix(), JWT: accountJWTAt(t, a.PublicKey, a.Name, iat-5_000)}
		updated, back, err := behindHeldWrite(ctx, t, sa, accountKey(a.PublicKey), pause, resume,
			func() (uint64, error) { return sa.UpdateAccount(ctx, n, rev) },
			func(given uint64) (uint64, error) {
				e := &accountEntry{a: n, revived: revived}
				e.a.Revision = at(rev, given)
				if err := sb.tombstoneAgain(ctx, e); err != nil {
					return 0, err
				}
				return mirrorRevision(sb, a.PublicKey), nil
			})
		return a, updated, back, err
	}

	// At the revision the write in process is given: it waits, then
	// writes the tombstone back.
	a, updated, back, err := held("acme", func(_, given uint64) uint64 { return given })
	if err != nil {
		t.Fatalf("a tombstone written back at revision %d behind a write in process that is given it: %v, want it stored after that write", updated, err)
	}
	if back <= updated {
		t.Fatalf("the tombstone got revision %d, the write before it %d", back, updated)
	}
	got, err := sa.AccountLatest(ctx, a.PublicKey)
	if err != nil || got.Revision != back || got.Phase != provision.PhaseDeleted {
		t.Fatalf("the account after its tombstone was written back: revision %d, phase %q, %v; want %d, %q", got.Revision, got.Phase, err, back, provision.PhaseDeleted)
	}

	// At the revision the write in process replaced: a mismatch once it
	// lands, the record left as that write made it.
	b, updated, _, err := held("beta", func(created, _ uint64) uint64 { return created })
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("a tombstone written back at a revision the write in process replaced: %v, want a revision mismatch", err)
	}
	got, err = sa.AccountLatest(ctx, b.PublicKey)
	if err != nil || got.Revision != updated || !got.Live() {
		t.Fatalf("the account after a stale write-back: revision %d, phase %q, %v; want %d, live", got.Revision, got.Phase, err, updated)
	}
}

package kvstore

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestTombstoneBackBehindPendingWriteOfTheKey: a revive that lost its
// name has its record replaced by the tombstone it revived, at the
// revision of the revive's record: by the revive itself once its name is
// fenced out (putBack), sent at once after that record was acknowledged,
// or by the sweep (tombstoneAgain), at the revision the watcher brought.
// On a replicated stream that record's write can still be in process on
// the leader (it answers a write before it clears it): the leader refuses
// the write-back with 10164, which nats.go reports as a revision
// mismatch, and it failed with a warning, the account hidden until
// another open. A write-back at the revision the write in process is
// given must wait for it and succeed; one at a revision that write
// replaced must still fail as a mismatch, the record left as it is.
func TestTombstoneBackBehindPendingWriteOfTheKey(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	iat := int64(10_000)
	tests := []struct {
		name string
		// back writes back tombstone, replaced by revived (a revive's
		// record, at its revision), through s.
		back func(ctx context.Context, s *Store, tombstone, revived provision.Account) error
	}{
		{"revive fenced out", func(ctx context.Context, s *Store, tombstone, revived provision.Account) error {
			return s.putBack(ctx, &accountEntry{a: tombstone}, revived.Revision)
		}},
		{"sweep", func(ctx context.Context, s *Store, tombstone, revived provision.Account) error {
			return s.tombstoneAgain(ctx, &accountEntry{a: revived, revived: &revivedRecord{Phase: tombstone.Phase, DeletedAt: tombstone.DeletedAt, JWT: tombstone.JWT}})
		}},
	}
	for i, tt := range tests {
		// held creates an account named name, updates it through sa (as
		// a revive writes its record), held in process, and then writes
		// back a tombstone of it through sb at the revision at(created,
		// given) names, given the one sa's update is to be given. It
		// returns the account, the revision of sa's update, and sb's
		// write-back's revision and error.
		held := func(name string, at func(created, given uint64) uint64) (provision.Account, uint64, uint64, error) {
			t.Helper()
			a := newAccount(t, name)
			rev, err := sa.CreateAccount(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			iat++
			n := a
			n.JWT = accountJWTAt(t, a.PublicKey, a.Name, iat)
			dead := tombstone(t, a, provision.PhaseDeleted, iat-5_000)
			updated, back, err := behindHeldWrite(ctx, t, sa, accountKey(a.PublicKey), pause, resume,
				func() (uint64, error) { return sa.UpdateAccount(ctx, n, rev) },
				func(given uint64) (uint64, error) {
					revived := n
					revived.Revision = at(rev, given)
					if err := tt.back(ctx, sb, dead, revived); err != nil {
						return 0, err
					}
					e, err := sb.kv.Get(ctx, accountKey(a.PublicKey))
					if err != nil {
						return 0, err
					}
					return e.Revision(), nil
				})
			return a, updated, back, err
		}

		// At the revision the write in process is given: it waits, then
		// writes the tombstone back.
		a, updated, back, err := held(fmt.Sprintf("acme%d", i), func(_, given uint64) uint64 { return given })
		if err != nil {
			t.Fatalf("%s: a tombstone written back at revision %d behind a write in process that is given it: %v, want it stored after that write", tt.name, updated, err)
		}
		if back <= updated {
			t.Fatalf("%s: the tombstone got revision %d, the write before it %d", tt.name, back, updated)
		}
		got, err := sa.AccountLatest(ctx, a.PublicKey)
		if err != nil || got.Revision != back || got.Phase != provision.PhaseDeleted {
			t.Fatalf("%s: the account after its tombstone was written back: revision %d, phase %q, %v; want %d, %q", tt.name, got.Revision, got.Phase, err, back, provision.PhaseDeleted)
		}

		// At the revision the write in process replaced: a mismatch once
		// it lands, the record left as that write made it.
		b, updated, _, err := held(fmt.Sprintf("beta%d", i), func(created, _ uint64) uint64 { return created })
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			t.Fatalf("%s: a tombstone written back at a revision the write in process replaced: %v, want a revision mismatch", tt.name, err)
		}
		got, err = sa.AccountLatest(ctx, b.PublicKey)
		if err != nil || got.Revision != updated || !got.Live() {
			t.Fatalf("%s: the account after a stale write-back: revision %d, phase %q, %v; want %d, live", tt.name, got.Revision, got.Phase, err, updated)
		}
	}
}

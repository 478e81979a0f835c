package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestRemoveBehindPendingWriteOfTheKey: the record's conditional delete
// of RemoveAccount, sent while an earlier write of the record is still in
// process on the leader of a replicated stream, is refused with 10164,
// which nats.go reports as a revision mismatch: RemoveAccount said
// ErrStale for an account nobody else had written, as UpdateAccount did
// (TestUpdateBehindPendingWriteOfTheKey). A remove at the revision the
// write in process is given must wait for it and succeed; one at a
// revision that write replaced must still fail with ErrStale, the account
// kept.
func TestRemoveBehindPendingWriteOfTheKey(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	iat := int64(10_000)
	// held creates an account named name, updates it through sa, held in
	// process, and then removes it through sb at the revision at(created,
	// given) names, given the one sa's update is to be given. It returns
	// the account, the revision of sa's update and sb's error.
	held := func(name string, at func(created, given uint64) uint64) (provision.Account, uint64, error) {
		t.Helper()
		a := newAccount(t, name)
		rev, err := sa.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		// sb must know the account, or it answers ErrNotFound at once.
		eventually(t, 20*time.Second, "sb's mirror holds "+name, func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
		iat++
		n := a
		n.JWT = accountJWTAt(t, a.PublicKey, a.Name, iat)
		updated, _, err := behindHeldWrite(ctx, t, sa, accountKey(a.PublicKey), pause, resume,
			func() (uint64, error) { return sa.UpdateAccount(ctx, n, rev) },
			func(given uint64) (uint64, error) { return 0, sb.RemoveAccount(ctx, a.PublicKey, at(rev, given)) })
		return a, updated, err
	}

	// At the revision the write in process is given: it waits, then
	// removes the account.
	a, updated, err := held("acme", func(_, given uint64) uint64 { return given })
	if err != nil {
		t.Fatalf("a remove at revision %d behind a write in process that is given it: %v, want the account removed after that write", updated, err)
	}
	for _, s := range []*Store{sa, sb} {
		if _, err := s.AccountLatest(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
			t.Fatalf("the account after its remove, read through store %s: %v, want ErrNotFound", s.opts.Instance, err)
		}
	}

	// At the revision the write in process replaced: stale once it lands.
	b, updated, err := held("beta", func(created, _ uint64) uint64 { return created })
	if !errors.Is(err, provision.ErrStale) {
		t.Fatalf("a remove at a revision the write in process replaced: %v, want ErrStale", err)
	}
	got, err := sa.AccountLatest(ctx, b.PublicKey)
	if err != nil || got.Revision != updated {
		t.Fatalf("the account after a stale remove: revision %d, %v; want %d", got.Revision, err, updated)
	}
}

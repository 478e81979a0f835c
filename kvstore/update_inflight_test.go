package kvstore

import (
	"errors"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// TestUpdateBehindPendingWriteOfTheKey: on a replicated bucket the stream
// leader refuses a conditional write of a key while an earlier write of it
// is still in process (10164), and it clears that only after it has
// answered the earlier write: an update sent at once at the revision just
// acknowledged can find it still in process. nats.go reports 10164 as a
// revision mismatch, and UpdateAccount said ErrStale for an account nobody
// else had written (TestClusterFailover saw it under load). Here the
// earlier write is held in process by pausing the stream's followers. An
// update at the revision the earlier write is given must wait for it and
// succeed; one at the revision before it must still fail with ErrStale.
func TestUpdateBehindPendingWriteOfTheKey(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	a := newAccount(t, "acme")
	rev, err := sa.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	iat := int64(10_000)
	next := func() provision.Account {
		iat++
		n := a
		n.JWT = accountJWTAt(t, a.PublicKey, a.Name, iat)
		return n
	}

	// held runs sa's update at from, held in process, and then sb's at
	// second (at the revision sa's is given when 0).
	key := accountKey(a.PublicKey)
	held := func(from, second uint64) (uint64, uint64, error) {
		t.Helper()
		n1, n2 := next(), next()
		return behindHeldWrite(ctx, t, sa, key, pause, resume,
			func() (uint64, error) { return sa.UpdateAccount(ctx, n1, from) },
			func(given uint64) (uint64, error) {
				if second == 0 {
					second = given
				}
				return sb.UpdateAccount(ctx, n2, second)
			})
	}

	// At the revision the write in process is given: it waits, then
	// succeeds.
	first, rev2, err := held(rev, 0)
	if err != nil {
		t.Fatalf("an update at revision %d behind a write in process that is given it: %v, want it stored after that write", first, err)
	}
	if rev2 <= first {
		t.Fatalf("the second update got revision %d, the first %d", rev2, first)
	}
	got, err := sa.AccountLatest(ctx, a.PublicKey)
	if err != nil || got.Revision != rev2 {
		t.Fatalf("the account after both: revision %d, %v; want %d", got.Revision, err, rev2)
	}

	// At the revision before the write in process: stale once it lands.
	_, _, err = held(rev2, rev2)
	if !errors.Is(err, provision.ErrStale) {
		t.Fatalf("an update at revision %d, which the write in process replaced: %v, want ErrStale", rev2, err)
	}
}

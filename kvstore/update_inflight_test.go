package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

	// inProcess waits until the stream leader holds a write of the
	// account's key in process: a probe at a revision the key never had
	// is refused with 10164 then, 10071 (and not stored) otherwise.
	subject := sa.subject + accountKey(a.PublicKey)
	inProcess := func() {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			_, err := sa.js.PublishMsg(ctx, nats.NewMsg(subject), jetstream.WithExpectLastSequencePerSubject(1<<62))
			if busy(err) {
				return
			}
			if err == nil {
				t.Fatal("the probe was stored")
			}
			if time.Now().After(deadline) {
				t.Fatalf("the first update is not in process on the stream leader: %v", err)
			}
		}
	}
	// held runs sa's update at from, held in process, and then sb's at
	// second; sb's must not end while the followers are paused (its
	// answer would be a guess), and the followers are let go after 3 s
	// of it. It returns the revision sa's is given and sb's result.
	held := func(from, second uint64) (uint64, uint64, error) {
		t.Helper()
		info, err := sa.stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := info.State.LastSeq
		pause()
		type result struct {
			rev uint64
			err error
		}
		first := make(chan result, 1)
		go func() {
			rev, err := sa.UpdateAccount(ctx, next(), from)
			first <- result{rev, err}
		}()
		inProcess()
		if second == 0 {
			second = last + 1 // what the first is given
		}
		then := make(chan result, 1)
		go func() {
			rev, err := sb.UpdateAccount(ctx, next(), second)
			then <- result{rev, err}
		}()
		var r2 result
		select {
		case r2 = <-then:
			resume()
			t.Fatalf("an update at revision %d ended while a write of the key was in process: %d, %v", second, r2.rev, r2.err)
		case <-time.After(3 * time.Second):
		}
		resume()
		r1 := <-first
		r2 = <-then
		if r1.err != nil || r1.rev != last+1 {
			t.Fatalf("the first update: %d, %v; want revision %d", r1.rev, r1.err, last+1)
		}
		return r1.rev, r2.rev, r2.err
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

package kvstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestLeaseRenewedBehindOwnPendingWrite: on a replicated bucket whose
// followers stop answering (a failover under way), a renewal's write gets
// no answer and stays in process on the stream leader. The next renewal
// read the entry as it was, and its write was refused as a revision
// mismatch (the server refuses a second expected-revision write to a key
// whose first is still in process): TryLease reported the lease held by
// another instance while no other instance had touched it, and the
// instance-name renewal logged that another process took its name over.
// It cannot tell yet: it must say the bucket is unavailable.
func TestLeaseRenewedBehindOwnPendingWrite(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPair(t)
	ctx := bg(t)
	if ok, err := sa.TryLease(ctx, "l", time.Minute); !ok || err != nil {
		t.Fatalf("take: %v, %v", ok, err)
	}
	pause()
	defer resume()
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err := sa.TryLease(short, "l", time.Minute)
	cancel()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("renewal with the followers paused: %v, want unavailable", err)
	}
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	held, err := sa.TryLease(short, "l", time.Minute)
	cancel()
	if !held && err == nil {
		t.Fatal("the next renewal, its own earlier write still in process, reported the lease held by another instance (false, nil); nobody else wrote it")
	}
	t.Logf("second renewal: %v, %v", held, err)
	resume()
	// Once the followers are back the earlier writes land; renewals
	// may still find one in process, never another holder.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		held, err := sa.TryLease(ctx, "l", time.Minute)
		if held {
			break
		}
		if err == nil {
			t.Fatal("a renewal once the followers are back reported the lease held by another instance (false, nil); nobody else wrote it")
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewal 10s after the followers are back: %v", err)
		}
	}
}

package kvstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestLeaseReleasedOverItsInFlightCreate: a take of a free lease whose
// create got no answer (a start cancelled, or the stream's followers away
// past the caller's deadline) was in process on the stream leader when
// Close released the lease. The release read no entry (the leader answers
// from what it has committed), took the lease for not held and returned;
// the create was stored once the followers were back and held the lease
// with the closed store's token for its whole ttl: the instance name
// restarted at once waited 5 s, another instance was refused.
func TestLeaseReleasedOverItsInFlightCreate(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, sb, pause, resume := replicatedPair(t)
	ctx := bg(t)
	pause()
	defer resume()
	short, cancel := context.WithTimeout(ctx, time.Second)
	held, err := sa.TryLease(short, "l", time.Minute)
	cancel()
	if held || !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("take with the followers paused: %v, %v; want unavailable", held, err)
	}
	closed := make(chan error, 1)
	go func() { closed <- sa.Close() }()
	// Close's release runs while the create is still in process.
	select {
	case err := <-closed:
		t.Logf("a closed with the followers paused: %v", err)
		closed <- err
	case <-time.After(time.Second):
	}
	resume()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a's Close did not end 30 s after the followers were back")
	}
	// The create is stored by now, or can never be: b reads what the
	// leader committed.
	short, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if held, err := sb.TryLease(short, "l", time.Minute); !held || err != nil {
		t.Fatalf("b after a closed: %v, %v; want the lease a released", held, err)
	}
}

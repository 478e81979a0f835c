package kvstore

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRetryWhoseStreamCheckFailsSaysSo: a retried user record is stored,
// then checked against the stream the store opened
// (TestRetryStaysOffTheNewBucket); while that check gets no answer, the
// retry writes again and checks again, until it gets one or the store
// closes. It did so without a word, the record unconfirmed (Close names
// it) and nothing in the log saying why.
func TestRetryWhoseStreamCheckFailsSaysSo(t *testing.T) {
	t.Parallel()
	_, _, s, lb, ctx, a := acmeStore(t)
	// The record's pack is not stored: the record goes to the retry path.
	var packFailed atomic.Bool
	fail := func(string) error {
		if packFailed.CompareAndSwap(false, true) {
			return fmt.Errorf("pack not stored (test): %w", nats.ErrTimeout)
		}
		return nil
	}
	s.packHook.Store(&fail)
	var checks atomic.Int32
	var away atomic.Bool
	away.Store(true)
	s.fault = func(point string) error {
		if point == "retry: stream check" && away.Load() {
			checks.Add(1)
			return fmt.Errorf("the stream's info (test fault point): %w", nats.ErrTimeout)
		}
		return nil
	}
	u := newUser(t, a.PublicKey, "unchecked")
	if err := s.AddUser(ctx, u, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the stream check failed 3 times", func() bool { return checks.Load() >= 3 })
	away.Store(false)
	key := userKey(u.PublicKey)
	eventually(t, 20*time.Second, "the record confirmed", func() bool {
		s.amu.Lock()
		defer s.amu.Unlock()
		return s.pending[key] == nil
	})
	var warns int
	for line := range strings.Lines(lb.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, key) && strings.Contains(line, "test fault point") {
			warns++
		}
	}
	if warns != 1 {
		t.Fatalf("the retry whose stream check failed %d times logged %d WARNs naming the key and the check's error, want 1:\n%s", checks.Load(), warns, lb.String())
	}
}

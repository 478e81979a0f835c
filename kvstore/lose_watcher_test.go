package kvstore

import (
	"testing"
	"time"
)

// TestLostStoreAppliesNothingFromTheNewBucket: once the store found its
// bucket deleted and made again (lose) it refuses every call, but its
// watcher, which the jetstream package moves onto the new stream, went on
// applying the new bucket's entries to the old mirror and acting on them:
// a name entry removed in the new bucket whose name the old mirror held
// for a live account was "written back" there, pointing to an account the
// new bucket has never held, which kept the name from every create.
func TestLostStoreAppliesNothingFromTheNewBucket(t *testing.T) {
	t.Parallel()
	d, k, s, lb, ctx, a := acmeStore(t)
	js := deleteBucket(ctx, t, d, s)
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
	s.mu.RLock()
	watched := s.m.watched
	s.mu.RUnlock()
	// The new bucket's revisions pass the old one's, then its name entry
	// for acme (another account's, since removed by hand) goes.
	last, err := removedNameInNewBucket(ctx, t, other, a.Name, watched)
	if err != nil {
		t.Fatal(err)
	}
	// The jetstream package moves the lost store's watcher onto the new
	// stream once it misses its heartbeats (its consumer went with the old
	// stream): a second consumer on the new stream, beside other's. Unless
	// the watcher has ended.
	ended := make(chan struct{})
	go func() { s.watcher.Wait(); close(ended) }()
	stream, err := js.Stream(ctx, "KV_"+s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 40*time.Second, "the lost store's watcher is on the new stream, or ended", func() bool {
		select {
		case <-ended:
			return true
		default:
		}
		info, err := stream.Info(ctx)
		return err == nil && info.State.Consumers >= 2
	})
	time.Sleep(time.Second) // it brings the new bucket's entries
	noNameEntry(ctx, t, other.kv, a.Name, "the lost store", lb)
	s.mu.RLock()
	after := s.m.watched
	s.mu.RUnlock()
	if after >= last {
		t.Errorf("the lost store's mirror followed the new bucket to revision %d", after)
	}
}

package kvstore

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRestartedWatcherStaysOffTheNewBucket: a watcher that ends (its
// ordered consumer's reset finds the stream gone, or the watchdog finds it
// stuck) is restarted after the last revision watched. When the bucket was
// deleted and made again meanwhile, before the watchdog's next look found
// it (lose), the restart started a watcher on the new bucket's stream, and
// its entries, whose revisions have nothing to do with the old one's, were
// applied to the mirror and acted on: a name entry removed there, whose
// name the mirror held for a live account, was written back into the new
// bucket, pointing to an account it never held.
func TestRestartedWatcherStaysOffTheNewBucket(t *testing.T) {
	t.Parallel()
	d, k, s, lb, ctx, a := acmeStore(t)
	s.mu.RLock()
	watched := s.m.watched
	s.mu.RUnlock()
	deleteBucket(ctx, t, d, s)
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	// The new bucket's revisions pass the old one's, then its name entry
	// for acme (another account's, removed by hand) goes.
	last, err := removedNameInNewBucket(ctx, t, other, a.Name, watched)
	if err != nil {
		t.Fatal(err)
	}
	// The watcher ends now, before the watchdog's next look, as when its
	// ordered consumer's reset found the stream gone: watch restarts it.
	s.restartWatch <- struct{}{}
	eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
	time.Sleep(time.Second) // the name loop writes back what it was handed
	noNameEntry(ctx, t, other.kv, a.Name, "the store", lb)
	s.mu.RLock()
	after := s.m.watched
	s.mu.RUnlock()
	if after >= last {
		t.Errorf("the store's mirror followed the new bucket to revision %d:\n%s", after, lb.String())
	}
}

// TestNameWriteBackStaysOffTheNewBucket: the name loop checks that the
// store is not lost before it writes a name entry back, but the bucket
// can be deleted and made again between that check and the write, which
// created the entry in the new bucket: a name held there for an account
// it has never held, which keeps the name from every create.
func TestNameWriteBackStaysOffTheNewBucket(t *testing.T) {
	t.Parallel()
	d, k, s, lb, ctx, a := acmeStore(t)
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	reached, release := make(chan struct{}), make(chan struct{})
	hook := func() {
		close(reached)
		<-release
	}
	s.nameBackHook.Store(&hook)
	kv, err := js.KeyValue(ctx, s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	// Removed by hand: the watcher hands it to the name loop.
	if err := kv.Delete(ctx, nameKey(a.Name)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatalf("the name entry was not handed to the name loop:\n%s", lb.String())
	}
	if err := js.DeleteKeyValue(ctx, s.opts.Bucket); err != nil {
		t.Fatal(err)
	}
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	close(release)
	eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
	time.Sleep(500 * time.Millisecond)
	noNameEntry(ctx, t, other.kv, a.Name, "the store", lb)
}

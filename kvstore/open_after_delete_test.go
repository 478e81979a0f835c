package kvstore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestOpenRightAfterTheBucketWasDeleted: the bucket, the only stream of
// the service's account on the server, is deleted and a store opened
// right after, over and over (an operator who deletes the bucket and
// restarts the service). The server removes the account's emptied
// streams directory in the background, and the bucket's create could find
// it gone under the directory it was making: "error creating store for
// stream" (10049), which is no ErrUnavailable, so the service's start
// failed. The create is tried again on that answer, within the bound.
func TestOpenRightAfterTheBucketWasDeleted(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	k, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Seal: k, Logger: slog.New(slog.DiscardHandler)}
	// The race shows about once in 200-300 Opens here: 400 catch a
	// regression in most runs, at a third of the time 1,000 took.
	for i := range 400 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := Open(ctx, nc, opts)
		if err != nil {
			cancel()
			t.Fatalf("Open %d, right after the bucket was deleted: %v", i, err)
		}
		s.Close()
		if err := js.DeleteKeyValue(ctx, s.opts.Bucket); err != nil {
			cancel()
			t.Fatalf("delete %d: %v", i, err)
		}
		cancel()
	}
}

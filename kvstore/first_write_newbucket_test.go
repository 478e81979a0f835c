package kvstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestFirstWriteStaysOffTheNewBucket: the bucket is deleted and made
// again by another instance before the store finds it lost (its watchdog
// looks every few seconds) while a user record is on its way. A retry
// checks the stream it stored in (TestRetryStaysOffTheNewBucket), but a
// first attempt did not: a pack, or a durable record (single, or written
// on its own on a bucket without atomic batches), was stored in the new
// bucket, a user of an account it has never held, which no stray removal
// takes; the durable add even succeeded. A write stored at a revision not
// past one the store had seen before it sent it is in another stream: it
// is removed from there, and the store is lost.
func TestFirstWriteStaysOffTheNewBucket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		durable, batches bool
	}{
		{name: "in a pack", batches: true},
		{name: "durable", durable: true, batches: true},
		{name: "durable on its own", durable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDeployment(t, 1)
			k, _ := newSealKey(t)
			if !tt.batches {
				js, err := jetstream.New(d.connect(t, d.svcCreds))
				if err != nil {
					t.Fatal(err)
				}
				makeBucket(t, js, func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false })
			}
			log, lb := newLog(t)
			s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k, Logger: log})
			if s.atomicBatches != tt.batches {
				t.Fatalf("the store uses atomic batches: %v, want %v", s.atomicBatches, tt.batches)
			}
			ctx := bg(t)
			a := newAccount(t, "acme")
			if _, err := s.CreateAccount(ctx, a); err != nil {
				t.Fatal(err)
			}
			// The old bucket is written further than the new one will be
			// when the record lands there.
			for i := range 5 {
				if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprintf("pad%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			u := newUser(t, a.PublicKey, "late")
			added := make(chan error, 1)
			var other *Store // on the bucket made again
			if tt.batches {
				// The batch loop is held until the bucket was made again.
				gate := make(chan struct{})
				hold := func() { <-gate }
				s.gatherHook.Store(&hold)
				go func() { added <- s.AddUser(ctx, u, tt.durable) }()
				eventually(t, 10*time.Second, "the record queued", func() bool {
					s.amu.Lock()
					defer s.amu.Unlock()
					return len(s.queue) == 1
				})
				deleteBucket(ctx, t, d, s)
				other = openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
				close(gate)
			} else {
				// The add is held once its account was checked.
				gate, reached := make(chan struct{}), make(chan struct{})
				s.fault = func(point string) error {
					if point == "add user: account checked" {
						close(reached)
						<-gate
					}
					return nil
				}
				go func() { added <- s.AddUser(ctx, u, tt.durable) }()
				<-reached
				deleteBucket(ctx, t, d, s)
				other = openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
				close(gate)
			}
			err := <-added
			if tt.durable && err == nil {
				t.Errorf("the durable add succeeded, its record in the bucket made again")
			}
			if err != nil && !errors.Is(err, provision.ErrUnavailable) {
				t.Errorf("the add: %v, want unavailable", err)
			}
			eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
			// Removed from there, if it was stored there. (The next open's
			// sweep would remove a user of an account the bucket does not
			// hold: the bucket is read, not opened again.)
			var got provision.User
			var gerr error
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				got, gerr = bucketUser(ctx, other, u.PublicKey)
				if errors.Is(gerr, jetstream.ErrKeyNotFound) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the bucket made again holds the user record written before the store found it replaced: %+v, %v\n%s", got, gerr, lb.String())
				}
			}
		})
	}
}

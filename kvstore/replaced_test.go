package kvstore

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestBucketReplacedUnderneath: the bucket is deleted under a running
// store (`nats kv del`) and made again empty (by another instance's
// start). The store's mirror then held the old bucket's accounts and
// revisions ahead of the new stream's: it kept answering reads from what
// no bucket holds any more, took creates into the new bucket, and failed
// updates as conflicts, without a word in the log. It now notices within
// a few seconds, says so at ERROR, and answers every call unavailable,
// naming the way out (a restart, which serves what the bucket holds now).
// A bucket deleted and not made again is noticed the same way.
func TestBucketReplacedUnderneath(t *testing.T) {
	t.Parallel()
	for _, again := range []bool{true, false} {
		name := "deleted and made again"
		if !again {
			name = "deleted"
		}
		t.Run(name, func(t *testing.T) {
			d := startDeployment(t, 1)
			nc := d.connect(t, d.svcCreds)
			k, _ := newSealKey(t)
			log, lb := newLog(t)
			s := openStore(t, nc, Options{Seal: k, Logger: log})
			ctx := bg(t)
			a := newAccount(t, "acme")
			if _, err := s.CreateAccount(ctx, a); err != nil {
				t.Fatal(err)
			}
			if err := s.Broken(); err != nil {
				t.Fatalf("Broken before anything happened to the bucket: %v", err)
			}
			deleteBucket(ctx, t, d, s)
			var other *Store
			if again {
				other = openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
			}
			var readErr error
			eventually(t, 10*time.Second, "a read of the store fails once its bucket is gone", func() bool {
				_, readErr = s.Account(ctx, a.PublicKey)
				return readErr != nil
			})
			if !errors.Is(readErr, provision.ErrUnavailable) || !strings.Contains(readErr.Error(), "restart") {
				t.Errorf("read after the bucket was replaced: %v, want unavailable naming the restart", readErr)
			}
			b := newAccount(t, "beta")
			if _, err := s.CreateAccount(ctx, b); !errors.Is(err, provision.ErrUnavailable) {
				t.Errorf("create after the bucket was replaced: %v, want unavailable", err)
			}
			if other != nil {
				if _, err := other.kv.Get(ctx, accountKey(b.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Errorf("the refused create's record in the new bucket: %v, want none", err)
				}
			}
			if err := s.Broken(); !errors.Is(err, provision.ErrUnavailable) {
				t.Errorf("Broken after the bucket was replaced: %v, want why (unavailable)", err)
			}
			if !strings.Contains(lb.String(), "level=ERROR") {
				t.Errorf("nothing logged at ERROR:\n%s", lb.String())
			}
		})
	}
}

// TestLostStoreWritesNothingToTheNewBucket: a user added in the background
// just as the bucket is deleted has its write tried again until Close. Once
// the store has found its bucket gone (lose), it answers nothing more; but
// its retries went on, and when another instance made the bucket again they
// stored the record there: a user of an account the new bucket has never
// held, which no stray removal takes (no instance saw that account removed).
func TestLostStoreWritesNothingToTheNewBucket(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	k, _ := newSealKey(t)
	log, lb := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k, Logger: log, CloseTimeout: time.Second})
	ctx := bg(t)
	a := newAccount(t, "acme")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	deleteBucket(ctx, t, d, s)
	// The mirror still holds the account: the add is taken, its write fails.
	u := newUser(t, a.PublicKey, "late")
	if err := s.AddUser(ctx, u, false); err != nil {
		t.Fatalf("add just after the delete: %v", err)
	}
	eventually(t, 10*time.Second, "the store finds its bucket gone", func() bool { return s.Broken() != nil })
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
	time.Sleep(5 * time.Second) // a few of the retries' rounds
	if e, err := other.kv.Get(ctx, userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the new bucket holds the user record the lost store was trying to write (%v, %v):\n%s", e, err, lb.String())
	}
}

// TestLostStoreStopsRestartingItsWatcher: once the store has found its
// bucket deleted (lose) it answers nothing more, and nothing a watcher
// brings is of use; but its watcher, ended by the delete, was restarted
// over and over, logging "cannot restart the watcher" every 5 s until the
// process stopped.
func TestLostStoreStopsRestartingItsWatcher(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	k, _ := newSealKey(t)
	log, lb := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k, Logger: log, Timeout: 500 * time.Millisecond})
	ctx := bg(t)
	deleteBucket(ctx, t, d, s)
	eventually(t, 10*time.Second, "the store finds its bucket gone", func() bool { return s.Broken() != nil })
	time.Sleep(time.Second) // a restart under way when it was found ends
	before := strings.Count(lb.String(), "cannot restart the watcher")
	time.Sleep(12 * time.Second) // past two rounds of the restart's longest backoff
	if n := strings.Count(lb.String(), "cannot restart the watcher") - before; n > 0 {
		t.Fatalf("the lost store tried to restart its watcher %d more times after it found its bucket gone:\n%s", n, lb.String())
	}
}

// TestRetryStaysOffTheNewBucket: a retry of a user record checks that the
// store is not lost, then writes; but the bucket can be deleted and made
// again by another instance between the check and the write (or before
// the watchdog finds it lost at all), and the create of a key never
// written, which any bucket of the name meets, stored the record in the
// new bucket: a user of an account it has never held.
func TestRetryStaysOffTheNewBucket(t *testing.T) {
	t.Parallel()
	for _, found := range []bool{true, false} {
		name := "the loss found before the write"
		if !found {
			name = "the loss not found yet"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d, k, s, lb, ctx, a := acmeStore(t)
			// The record's pack is not stored: the record goes to the
			// retry path, which stops between its check and its write.
			failed := false
			fail := func(string) error {
				if failed {
					return nil
				}
				failed = true
				return nats.ErrTimeout
			}
			s.packHook.Store(&fail)
			reached, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			hook := func(string) {
				once.Do(func() {
					close(reached)
					<-release
				})
			}
			s.retryHook.Store(&hook)
			u := newUser(t, a.PublicKey, "late")
			if err := s.AddUser(ctx, u, false); err != nil {
				t.Fatal(err)
			}
			select {
			case <-reached:
			case <-time.After(10 * time.Second):
				t.Fatalf("the record was not retried:\n%s", lb.String())
			}
			deleteBucket(ctx, t, d, s)
			if found {
				eventually(t, 10*time.Second, "the store finds its bucket gone", func() bool { return s.Broken() != nil })
			}
			other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: k})
			close(release)
			ended := make(chan struct{})
			go func() {
				s.retries.Wait()
				close(ended)
			}()
			select {
			case <-ended:
			case <-time.After(20 * time.Second):
				t.Fatalf("the retry did not end:\n%s", lb.String())
			}
			if e, err := other.kv.Get(ctx, userKey(u.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Errorf("the new bucket holds the user record the retry wrote (%v, %v):\n%s", e, err, lb.String())
			}
			eventually(t, 10*time.Second, "the store finds its bucket replaced", func() bool { return s.Broken() != nil })
		})
	}
}

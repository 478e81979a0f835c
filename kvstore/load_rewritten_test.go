package kvstore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestOpenHoldsKeysRewrittenWhileItLoads: other instances write the
// bucket's keys again while a new one opens it (revokes, updates,
// renewals, packs of user records removed), each write removing the
// key's message, which the new one's watcher may not have got to yet. The
// watcher's end of its initial values counts the entries written since as
// initial ones, so Open returned with keys written again missing (their
// new revisions came a moment later): the new instance listed fewer users
// than the bucket held before it started.
func TestOpenHoldsKeysRewrittenWhileItLoads(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "one"})
	ctx := bg(t)
	a := newAccount(t, "tenant")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// Enough user records that a load takes a while, each acknowledged.
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	subjects, records := make([]string, n), make([][]byte, n)
	for i := range n {
		u := newUser(t, a.PublicKey, fmt.Sprint("u", i))
		subjects[i] = s.subject + userKey(u.PublicKey)
		if records[i], err = json.Marshal(u); err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(subjects[i], records[i]); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("user records not acknowledged within 60 s")
	}
	if got := js.PublishAsyncPending(); got != 0 {
		t.Fatalf("%d user records not stored", got)
	}

	// Another instance writes records again, each as it is, thousands a
	// second: one of the first ones, which a load has delivered, then one
	// of the last ones, which it has not got to yet.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 20 {
				i := rand.IntN(n / 2)
				_ = nc.Publish(subjects[i], records[i])
				i = n - 1 - rand.IntN(n/10)
				_ = nc.Publish(subjects[i], records[i])
			}
			_ = nc.FlushTimeout(10 * time.Second)
			time.Sleep(2 * time.Millisecond)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for try := range 3 {
		other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: fmt.Sprint("two-", try)})
		users, err := other.Users(ctx, a.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != n {
			t.Errorf("open %d: lists %d users right after Open, want the %d stored before", try, len(users), n)
		}
		if err := other.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

package kvstore

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestAnOverloadedBucketLosesNoUserRecord: a stream whose ingest queue is
// full drops a write and answers it "429 too many requests": the stream is
// overloaded, as in an outage, and the record is not at fault. A user
// record written in the background was tried five times in about a
// second and a half, then given up: the user, whose creds were handed
// out, was missing from user.list and could not be found to revoke.
func TestAnOverloadedBucketLosesNoUserRecord(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	// A small ingest queue, which the flood below keeps full.
	nd := d.nodes[0]
	conf, err := os.ReadFile(nd.conf)
	if err != nil {
		t.Fatal(err)
	}
	small := strings.Replace(string(conf), "max_file_store: 2GB }", "max_file_store: 2GB, max_buffered_msgs: 20 }", 1)
	if small == string(conf) {
		t.Fatal("no jetstream block to change")
	}
	if err := os.WriteFile(nd.conf, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	d.restart(t, nd.name)
	key, _ := newSealKey(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "one"})
	ctx := bg(t)
	a := newAccount(t, "tenant")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}

	// Another publisher on the bucket's subjects (keys the store skips),
	// without asking for answers, as fast as it can.
	flood := d.connect(t, d.svcCreds)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 100 {
				_ = flood.Publish(s.subject+leasePrefix+"flood", []byte("x"))
			}
		}
	})
	// Users added while the flood goes on, for longer than five attempts.
	var added []provision.User
	for i, end := 0, time.Now().Add(4*time.Second); time.Now().Before(end); i++ {
		u := newUser(t, a.PublicKey, fmt.Sprint("u", i))
		if err := s.AddUser(ctx, u, false); err != nil {
			t.Fatalf("AddUser %d: %v", i, err)
		}
		added = append(added, u)
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	// The flood's messages wait in its connection's buffer, seconds' worth
	// under load: they must be in before another store opens, whose load
	// of the bucket ends early while entries keep coming (it listed users
	// the bucket held as missing, its watcher bringing them a moment
	// later).
	if err := flood.FlushTimeout(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	var n int
	for deadline := time.Now().Add(15 * time.Second); ; {
		s.amu.Lock()
		n = len(s.pending)
		s.amu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n > 0 {
		t.Errorf("%d user records still not stored 15 s after the flood", n)
	}
	// Each record is stored, as another store reading the bucket sees.
	other := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "two"})
	for _, st := range []*Store{s, other} {
		var got []provision.User
		// A record lost never comes; one the watcher brings after the
		// load does (the ingest queue's last flood messages can still be
		// stored during it).
		for deadline := time.Now().Add(10 * time.Second); ; {
			if got, err = st.Users(ctx, a.PublicKey); err != nil {
				t.Fatal(err)
			}
			if len(got) == len(added) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(got) != len(added) {
			t.Errorf("store %s lists %d users, want the %d added", st.opts.Instance, len(got), len(added))
		}
	}
}

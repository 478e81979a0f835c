package filestore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAnsweredBeforeItsHeaderSurvivesAPowerLoss: a change is answered once
// its records are flushed, before the header that counts them is. A power
// loss at that moment leaves the journal as that flush made it, and a
// start on it has the change. The test holds the header's flush, takes the
// journal's bytes as the records' flush left them, and opens a copy of the
// store with them.
func TestAnsweredBeforeItsHeaderSurvivesAPowerLoss(t *testing.T) {
	ctx := context.Background()
	var (
		mu    sync.Mutex
		armed bool
		// before counts the journal's data flushes done before armed.
		before int
		n      int
		image  []byte
	)
	gate := make(chan struct{})
	// Installed before the store opens: the committer reads syncFile.
	orig := syncFile
	syncFile = func(f *os.File, dataOnly bool) error {
		mu.Lock()
		if !armed || !dataOnly || !strings.HasPrefix(filepath.Base(f.Name()), journalFile) {
			mu.Unlock()
			err := orig(f, dataOnly)
			if dataOnly {
				mu.Lock()
				before++
				mu.Unlock()
			}
			return err
		}
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1: // b's records
			err := orig(f, dataOnly)
			data, rerr := os.ReadFile(f.Name())
			mu.Lock()
			image = data
			mu.Unlock()
			if rerr != nil {
				t.Error(rerr)
			}
			return err
		case 2: // b's header: held until the copy is read
			<-gate
		}
		return orig(f, dataOnly)
	}
	t.Cleanup(func() { syncFile = orig })
	dir := t.TempDir()
	s := open(t, dir, Options{})
	a := newAccount(t, "a")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// a's two flushes, its records' and its header's, are over: the
	// next one is b's.
	waitCommitted(t, dir, rev)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		done := before >= 2
		if done {
			armed = true
		}
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a's header was not flushed")
		}
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)

	b := newAccount(t, "b")
	answered := make(chan error, 1)
	go func() {
		_, err := s.CreateAccount(ctx, b)
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("create while the header's flush is held: %v", err)
		}
	case <-time.After(5 * time.Second):
		release()
		t.Fatal("b is not answered until its header is flushed")
	}
	mu.Lock()
	img := image
	flushes := n
	mu.Unlock()
	if img == nil {
		t.Fatalf("b was answered before its records were flushed (%d journal flushes)", flushes)
	}

	// The store as a power loss now leaves it: the snapshot as it is, the
	// journal as flushed with b's records, no lock file.
	crashed := t.TempDir()
	snap, err := os.ReadFile(filepath.Join(dir, snapshotFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{snapshotFile: snap, journalFile: img} {
		if err := os.WriteFile(filepath.Join(crashed, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	release()
	mu.Lock()
	armed = false
	mu.Unlock()
	got := open(t, crashed, Options{})
	for _, acc := range []string{a.PublicKey, b.PublicKey} {
		if _, err := got.Account(ctx, acc); err != nil {
			t.Errorf("after the power loss, account %s: %v", acc, err)
		}
	}
}

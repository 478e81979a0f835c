package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

var errInjected = errors.New("injected flush failure")

// syncFault makes flushes of the journal fail on demand. It is installed
// before a store opens, and armed while it runs.
type syncFault struct {
	mu        sync.Mutex
	countdown int  // fail the countdown-th journal data flush from now; 0: none
	always    bool // and every flush after it, of any file
	failing   bool
	failed    int
	seen      int   // journal data flushes begun
	err       error // what a failing flush returns; errInjected when nil
}

// waitSeen waits until n journal data flushes have begun: a commit's
// header is flushed after its callers have their answer, and one begun
// after arm would be counted.
func (f *syncFault) waitSeen(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		seen := f.seen
		f.mu.Unlock()
		if seen >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d journal data flushes after 5s, want %d", seen, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func installSyncFault(t *testing.T) *syncFault {
	t.Helper()
	f := &syncFault{}
	orig := syncFile
	syncFile = func(file *os.File, dataOnly bool) error {
		if f.fail(file, dataOnly) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.err != nil {
				return f.err
			}
			return errInjected
		}
		return orig(file, dataOnly)
	}
	t.Cleanup(func() { syncFile = orig })
	return f
}

func (f *syncFault) fail(file *os.File, dataOnly bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		f.failed++
		return true
	}
	if !dataOnly || !strings.HasPrefix(filepath.Base(file.Name()), journalFile) {
		return false
	}
	f.seen++
	if f.countdown == 0 {
		return false
	}
	f.countdown--
	if f.countdown > 0 {
		return false
	}
	f.failed++
	f.failing = f.always
	return true
}

func (f *syncFault) arm(countdown int, always bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countdown, f.always, f.failing, f.failed = countdown, always, false, 0
}

func (f *syncFault) disarm() { f.arm(0, false) }

func (f *syncFault) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// TestSyncFailure: a flush of a change's records that fails fails the
// request, the record is not applied, and it is not read back after a
// restart; the store goes on with a new snapshot, or, when it cannot write
// one, refuses writes until it is reopened. A change whose records were
// flushed is done: a failure of the header's flush after them (its
// answer does not wait for it) leaves it applied, there after a restart.
func TestSyncFailure(t *testing.T) {
	tests := []struct {
		name      string
		countdown int  // which journal data flush of the commit fails
		always    bool // and everything after
		lazy      bool // the failing write carries only lazy user records
		lands     bool // the failing flush is the header's, after the records'
	}{
		{"data flush fails", 1, false, false, false},
		{"header flush fails", 2, false, false, true},
		{"every flush fails from the data flush on", 1, true, false, false},
		{"every flush fails from the header flush on", 2, true, false, true},
		{"a lazy user write fails", 1, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			fault := installSyncFault(t)
			dir := t.TempDir()
			log, logs := newLog()
			s := open(t, dir, Options{Logger: log})
			a := newAccount(t, "a")
			rev, err := s.CreateAccount(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			// The header of a's commit is flushed after a's answer: the
			// fault counts the flushes from b's on, after a's two.
			fault.waitSeen(t, 2)
			// A lazy user record waits, and goes with the failing write.
			u := newUser(t, a.PublicKey, "u", 1)
			if err := s.AddUser(ctx, u, false); err != nil {
				t.Fatal(err)
			}
			fault.arm(tt.countdown, tt.always)
			b := newAccount(t, "b")
			if tt.lazy {
				deadline := time.Now().Add(5 * time.Second)
				for fault.count() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the lazy user records were not written")
					}
					time.Sleep(time.Millisecond)
				}
			} else if tt.lands {
				if _, err = s.CreateAccount(ctx, b); err != nil {
					t.Fatalf("CreateAccount failed though its records were flushed: %v", err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for fault.count() == 0 {
					if time.Now().After(deadline) {
						t.Fatal("the header was not flushed")
					}
					time.Sleep(time.Millisecond)
				}
				if _, err := s.Account(ctx, b.PublicKey); err != nil {
					t.Errorf("the account whose records were flushed is not applied: %v", err)
				}
			} else {
				_, err = s.CreateAccount(ctx, b)
				if err == nil {
					t.Fatal("CreateAccount succeeded though its flush failed")
				}
				if tt.always != errors.Is(err, provision.ErrUnavailable) {
					t.Errorf("error %v: ErrUnavailable %v, want %v", err, errors.Is(err, provision.ErrUnavailable), tt.always)
				}
				if _, err := s.Account(ctx, b.PublicKey); !errors.Is(err, provision.ErrNotFound) {
					t.Errorf("the failed account is applied: %v", err)
				}
			}
			// The lazy user was applied before; it stays.
			if _, err := s.User(ctx, u.PublicKey); err != nil {
				t.Errorf("the lazy user record is gone: %v", err)
			}

			c := newAccount(t, "c")
			_, errC := s.CreateAccount(ctx, c)
			errU := s.AddUser(ctx, newUser(t, a.PublicKey, "late", 2), false)
			errRev := error(nil)
			if tt.always {
				for _, err := range []error{errC, errU} {
					if !errors.Is(err, provision.ErrUnavailable) {
						t.Errorf("a write after a failure without a new snapshot: %v, want ErrUnavailable", err)
					}
				}
			} else {
				if errC != nil || errU != nil {
					t.Fatalf("writes after a recovered failure: %v, %v", errC, errU)
				}
				a.JWT = accountJWT(t, a.PublicKey, "a2", mustPub(t, a.SigningKeys[0].Seed))
				_, errRev = s.UpdateAccount(ctx, a, rev)
				if errRev != nil {
					t.Fatalf("update after a recovered failure: %v", errRev)
				}
			}
			want := dumpOf(t, s)
			s.Close()
			fault.disarm()

			s = open(t, dir, Options{})
			got := dumpOf(t, s)
			if tt.always {
				// The user record applied only in memory is lost with the
				// store's writes; what was acknowledged is there.
				for pub, us := range want.Users {
					// u went with b's records: flushed when b lands.
					want.Users[pub] = slices.DeleteFunc(us, func(x provision.User) bool { return (x.Equal(u) && !tt.lands) || x.Name == "late" })
					if len(want.Users[pub]) == 0 {
						delete(want.Users, pub)
					}
				}
			}
			assertDump(t, got, want)
			if _, err := s.Account(ctx, b.PublicKey); tt.lands && err != nil {
				t.Errorf("the account whose records were flushed is gone after a reopen: %v", err)
			} else if !tt.lands && !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("the failed account came back after a reopen: %v", err)
			}
			if !strings.Contains(logs.String(), "journal write failed") {
				t.Errorf("the failure is not logged: %s", logs.String())
			}
		})
	}
}

// waitCommitted waits until the journal in dir has a header that commits
// the records up to sequence seq: a commit's header is flushed after its
// callers have their answer.
func waitCommitted(t *testing.T, dir string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(dir, journalFile))
		if err != nil {
			t.Fatal(err)
		}
		if hdr, _, ok := pickSlot(data); ok && hdr.seq >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal's header does not commit sequence %d after 5s", seq)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSyncFailureNoRoom: a flush that fails for want of room on the disk
// fails the request with ErrFull (507), naming the disk; when no new
// snapshot can be written either, writes fail with ErrFull until the store
// is reopened. Nothing failed is applied.
func TestSyncFailureNoRoom(t *testing.T) {
	for _, always := range []bool{false, true} {
		t.Run(fmt.Sprint("every flush fails: ", always), func(t *testing.T) {
			ctx := context.Background()
			fault := installSyncFault(t)
			fault.err = &os.PathError{Op: "sync", Path: "journal", Err: syscall.ENOSPC}
			s := open(t, t.TempDir(), Options{})
			fault.arm(1, always)
			b := newAccount(t, "b")
			_, err := s.CreateAccount(ctx, b)
			if !errors.Is(err, provision.ErrFull) || !strings.Contains(err.Error(), "no room") {
				t.Fatalf("CreateAccount on a full disk: %v, want ErrFull naming the disk", err)
			}
			if _, err := s.Account(ctx, b.PublicKey); !errors.Is(err, provision.ErrNotFound) {
				t.Errorf("the failed account is applied: %v", err)
			}
			_, err = s.CreateAccount(ctx, newAccount(t, "c"))
			if always && (!errors.Is(err, provision.ErrFull) || !errors.Is(err, provision.ErrUnavailable)) {
				t.Errorf("a write on a store broken by a full disk: %v, want ErrFull and ErrUnavailable", err)
			}
			if !always && err != nil {
				t.Errorf("a write after the disk had room again: %v", err)
			}
			if err := s.Broken(); always != (err != nil) {
				t.Errorf("Broken = %v; want an error only when no snapshot could be written", err)
			}
			fault.disarm()
			s.Close()
		})
	}
}

// stopAt makes the generation writer stop at a step, as a crash there
// would: nothing after it happens, nothing is cleaned up.
type stopAt struct {
	mu   sync.Mutex
	step string
	hit  int
}

var errCrash = errors.New("simulated crash")

func installStepHook(t *testing.T) *stopAt {
	t.Helper()
	h := &stopAt{}
	orig := stepHook
	stepHook = func(step string) error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if step == h.step {
			h.hit++
			return fmt.Errorf("%w at %s", errCrash, step)
		}
		return nil
	}
	t.Cleanup(func() { stepHook = orig })
	return h
}

func (h *stopAt) set(step string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.step, h.hit = step, 0
}

func (h *stopAt) hits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hit
}

func storeFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

var generationSteps = []string{stepSnapshotWritten, stepJournalWritten, stepSnapshotPlaced, stepJournalPlaced}

// TestCrashDuringCompaction stops the compaction that Open does at each
// step: the store left behind is not damaged, and opens with everything.
func TestCrashDuringCompaction(t *testing.T) {
	hook := installStepHook(t)
	for _, step := range generationSteps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			want := smallStore(t, dir) // the journal holds records: Open compacts
			hook.set(step)
			if _, err := Open(dir, Options{}); !errors.Is(err, errCrash) {
				t.Fatalf("Open: %v, want the simulated crash", err)
			}
			hook.set("")
			t.Logf("files after the crash: %v", storeFiles(t, dir))
			rep, err := Check(dir, nil)
			if err != nil || rep.Damaged() {
				t.Fatalf("Check after a crash at %s: %v %+v", step, err, rep.Damage)
			}
			s := open(t, dir, Options{})
			assertDump(t, dumpOf(t, s), want)
			closeStore(t, s)
			if got := storeFiles(t, dir); !slices.Equal(got, []string{journalFile, lockFile, snapshotFile}) {
				t.Errorf("files after recovery: %v", got)
			}
			s = open(t, dir, Options{})
			assertDump(t, dumpOf(t, s), want)
		})
	}
}

// TestCompactionFailsAtRuntime stops a compaction the store starts while it
// runs: before its snapshot is in place the store goes on with the old
// journal; after, it refuses writes until reopened. Either way a reopen
// has everything acknowledged.
func TestCompactionFailsAtRuntime(t *testing.T) {
	hook := installStepHook(t)
	for _, step := range generationSteps {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := open(t, dir, Options{CompactBytes: 4 << 10})
			hook.set(step)
			t.Cleanup(func() { hook.set("") })
			placed := step == stepSnapshotPlaced || step == stepJournalPlaced
			// The compaction runs once a commit is answered: the writes
			// after it may meet the store it left.
			for i := 0; hook.hits() == 0; i++ {
				_, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i)))
				if err != nil && !(placed && errors.Is(err, provision.ErrUnavailable)) {
					t.Fatalf("create %d: %v", i, err)
				}
			}
			hook.set("")
			_, err := s.CreateAccount(ctx, newAccount(t, "after"))
			switch {
			case placed && !errors.Is(err, provision.ErrUnavailable):
				t.Fatalf("a write after a compaction failed past its snapshot: %v, want ErrUnavailable", err)
			case !placed && err != nil:
				t.Fatalf("a write after a compaction failed before its snapshot: %v", err)
			}
			want := dumpOf(t, s)
			s.Close()
			s = open(t, dir, Options{})
			assertDump(t, dumpOf(t, s), want)
		})
	}
}

// TestCompactionBrokenAtRuntimeSaysRestart: a compaction the store starts
// while it runs, failing past its snapshot, leaves the store refusing
// every change until it is reopened. The log says so at ERROR, once: it
// said "compaction failed; the journal keeps growing", and the one line
// asking for a restart was the responder's for a request that met the
// store afterwards (none during a stop, answered with the stop's 504).
func TestCompactionBrokenAtRuntimeSaysRestart(t *testing.T) {
	hook := installStepHook(t)
	for _, step := range []string{stepSnapshotPlaced, stepJournalPlaced} {
		t.Run(step, func(t *testing.T) {
			ctx := context.Background()
			log, logs := newLog()
			s := open(t, t.TempDir(), Options{CompactBytes: 4 << 10, Logger: log})
			hook.set(step)
			t.Cleanup(func() { hook.set("") })
			for i := 0; hook.hits() == 0; i++ {
				if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i))); err != nil && !errors.Is(err, provision.ErrUnavailable) {
					t.Fatalf("create %d: %v", i, err)
				}
			}
			hook.set("")
			deadline := time.Now().Add(5 * time.Second)
			for s.Broken() == nil {
				if time.Now().After(deadline) {
					t.Fatal("the store did not break")
				}
				time.Sleep(time.Millisecond)
			}
			_, _ = s.CreateAccount(ctx, newAccount(t, "after"))
			var said int
			for _, line := range strings.Split(logs.String(), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, "no more writes until it is reopened") {
					said++
				}
			}
			if said != 1 {
				t.Errorf("ERROR lines saying the store takes no more writes until reopened: %d, want 1; log:\n%s", said, logs.String())
			}
		})
	}
}

// TestCrashDuringUpgrade stops an upgrade at each step: the next Open
// finishes it, once.
func TestCrashDuringUpgrade(t *testing.T) {
	hook := installStepHook(t)
	for _, step := range append(slices.Clone(generationSteps), stepV1Renamed) {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			want := writeV1Store(t, dir)
			orig := map[string][]byte{v1SnapshotFile: readFile(t, filepath.Join(dir, v1SnapshotFile)), v1JournalFile: readFile(t, filepath.Join(dir, v1JournalFile))}
			hook.set(step)
			if _, err := Open(dir, Options{}); !errors.Is(err, errCrash) {
				t.Fatalf("Open: %v, want the simulated crash", err)
			}
			hook.set("")
			rep, err := Check(dir, nil)
			if err != nil || rep.Damaged() {
				t.Fatalf("Check after a crash at %s: %v %+v", step, err, rep.Damage)
			}
			log, logs := newLog()
			s := open(t, dir, Options{Logger: log})
			assertV1State(t, s, want)
			closeStore(t, s)
			for n, b := range orig {
				if got := readFile(t, filepath.Join(dir, n+v1BackupSuffix)); !slices.Equal(got, b) {
					t.Errorf("backup %s differs from the original", n+v1BackupSuffix)
				}
			}
			if got := storeFiles(t, dir); !slices.Equal(got, []string{v1JournalFile + v1BackupSuffix, journalFile, lockFile, v1SnapshotFile + v1BackupSuffix, snapshotFile}) {
				t.Errorf("files after the upgrade: %v", got)
			}
			if n := strings.Count(logs.String(), "upgraded a version 1 store"); n != 1 {
				t.Errorf("the upgrade was logged %d times: %s", n, logs.String())
			}
		})
	}
}

// TestSyncFailureUnderLoad fails one flush while writers run at once, so
// that it may hit a batch waiting for its header as well as the one being
// written: afterwards, and after a reopen, every write that succeeded is
// there and every one that failed is not.
func TestSyncFailureUnderLoad(t *testing.T) {
	fault := installSyncFault(t)
	for _, countdown := range []int{1, 2, 3, 5, 8, 13} {
		t.Run(fmt.Sprint("flush-", countdown), func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := open(t, dir, Options{})
			const workers, rounds = 6, 8
			type result struct {
				final    provision.Account // the account as its last successful update left it
				kept     []provision.User  // users whose AddUser succeeded
				lost     []provision.User  // users whose AddUser failed
				failures int
			}
			results := make([]result, workers)
			accts := make([]provision.Account, workers)
			for w := range workers {
				accts[w] = newAccount(t, fmt.Sprint("w", w))
				rev, err := s.CreateAccount(ctx, accts[w])
				if err != nil {
					t.Fatal(err)
				}
				accts[w].Revision = rev
			}
			fault.arm(countdown, false)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					r := &results[w]
					a := accts[w]
					r.final = a
					signer := mustPub(t, a.SigningKeys[0].Seed)
					for i := range rounds {
						next := a
						next.JWT = accountJWT(t, a.PublicKey, fmt.Sprint("w", w, "-", i), signer)
						rev, err := s.UpdateAccount(ctx, next, a.Revision)
						if err == nil {
							next.Revision = rev
							a, r.final = next, next
						} else {
							r.failures++
						}
						u := newUser(t, a.PublicKey, fmt.Sprint("u", i), int64(i))
						if err := s.AddUser(ctx, u, i%2 == 0); err == nil {
							r.kept = append(r.kept, u)
						} else {
							r.lost = append(r.lost, u)
						}
					}
				})
			}
			wg.Wait()
			failures := 0
			for _, r := range results {
				failures += r.failures + len(r.lost)
			}
			if fault.count() != 1 {
				t.Fatalf("%d flushes failed, want 1", fault.count())
			}
			check := func(s *Store, when string) {
				t.Helper()
				for w, r := range results {
					got, err := s.Account(ctx, accts[w].PublicKey)
					if err != nil || !reflect.DeepEqual(got, r.final) {
						t.Fatalf("%s: worker %d's account is not as its last successful update left it", when, w)
					}
					for _, u := range r.kept {
						if got, err := s.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
							t.Fatalf("%s: worker %d's user %s, added, is missing: %v", when, w, u.Name, err)
						}
					}
					for _, u := range r.lost {
						if _, err := s.User(ctx, u.PublicKey); !errors.Is(err, provision.ErrNotFound) {
							t.Fatalf("%s: worker %d's user %s, refused, is there: %v", when, w, u.Name, err)
						}
					}
				}
			}
			check(s, "before reopen")
			closeStore(t, s)
			fault.disarm()
			check(open(t, dir, Options{}), "after reopen")
			t.Logf("%d writes failed with the flush", failures)
		})
	}
}

// pipelineFault holds the first journal data flush once armed until the
// test lets it go, and fails the second: the batch whose records the first
// flushed waits for its header, which goes with the next batch's records
// in the second.
type pipelineFault struct {
	mu    sync.Mutex
	armed bool
	n     int
	// seen and finished count the journal data flushes begun and ended.
	seen, finished int
	entered        chan struct{}
	gate           chan struct{}
}

func installPipelineFault(t *testing.T) *pipelineFault {
	t.Helper()
	f := &pipelineFault{}
	orig := syncFile
	syncFile = func(file *os.File, dataOnly bool) error {
		if dataOnly && strings.HasPrefix(filepath.Base(file.Name()), journalFile) {
			f.mu.Lock()
			n := 0
			f.seen++
			if f.armed {
				f.n++
				n = f.n
			}
			entered, gate := f.entered, f.gate
			f.mu.Unlock()
			defer func() {
				f.mu.Lock()
				f.finished++
				f.mu.Unlock()
			}()
			switch n {
			case 1:
				close(entered)
				<-gate
			case 2:
				return errInjected
			}
			return orig(file, dataOnly)
		}
		return orig(file, dataOnly)
	}
	t.Cleanup(func() { syncFile = orig })
	return f
}

// armIdle arms f once no journal data flush is under way.
func (f *pipelineFault) armIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		idle := f.seen == f.finished
		if idle {
			f.armed, f.n, f.entered, f.gate = true, 0, make(chan struct{}), make(chan struct{})
		}
		f.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a journal flush is still under way after 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func (f *pipelineFault) disarm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = false
}

// TestAnswersOfAFailedFlush: first's records are flushed and it is
// answered; the flush that carries its header and second's record fails.
// first stays: applied, and there after a reopen (a start keeps the valid
// records past the committed length, and the journal is closed past
// first's, not before). second was checked against the state with first
// in it: a refusal that first makes stands, and an operation that passed
// is answered the failure, is not applied, and succeeds when tried again.
func TestAnswersOfAFailedFlush(t *testing.T) {
	fault := installPipelineFault(t)
	ctx := context.Background()
	type env struct {
		s     *Store
		a     provision.Account // live, at a.Revision
		other provision.Account // live, named "other"
		u     provision.User    // a user of a, not recorded
	}
	update := func(e *env, name string) error {
		a := e.a
		a.JWT = accountJWT(t, a.PublicKey, name, mustPub(t, a.SigningKeys[0].Seed))
		_, err := e.s.UpdateAccount(ctx, a, e.a.Revision)
		return err
	}
	x1, x2 := newAccount(t, "x"), newAccount(t, "x")
	u := func(e *env) provision.User { return e.u }
	tests := []struct {
		name          string
		first, second func(e *env) error
		refusal       error // second's answer when first's effect refuses it; nil: the failure
	}{
		{"create of a name first's create took",
			func(e *env) error { _, err := e.s.CreateAccount(ctx, x1); return err },
			func(e *env) error { _, err := e.s.CreateAccount(ctx, x2); return err },
			provision.ErrConflict},
		{"update of a revision first's update moved",
			func(e *env) error { return update(e, "first") },
			func(e *env) error { return update(e, "second") },
			provision.ErrStale},
		{"durable user of an account first removed",
			func(e *env) error { return e.s.RemoveAccount(ctx, e.a.PublicKey, e.a.Revision) },
			func(e *env) error { return e.s.AddUser(ctx, u(e), true) },
			provision.ErrNotFound},
		{"durable user key first's durable add took",
			func(e *env) error { return e.s.AddUser(ctx, u(e), true) },
			func(e *env) error { return e.s.AddUser(ctx, u(e), true) },
			provision.ErrConflict},
		{"create of a name first's remove freed",
			func(e *env) error { return e.s.RemoveAccount(ctx, e.a.PublicKey, e.a.Revision) },
			func(e *env) error { _, err := e.s.CreateAccount(ctx, newAccount(t, e.a.Name)); return err },
			nil},
		{"create of a name a live account holds",
			func(e *env) error { _, err := e.s.CreateAccount(ctx, x1); return err },
			func(e *env) error { _, err := e.s.CreateAccount(ctx, newAccount(t, "other")); return err },
			provision.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			e := &env{s: open(t, dir, Options{}), a: newAccount(t, "a"), other: newAccount(t, "other")}
			for _, a := range []*provision.Account{&e.a, &e.other} {
				rev, err := e.s.CreateAccount(ctx, *a)
				if err != nil {
					t.Fatal(err)
				}
				a.Revision = rev
			}
			e.u = newUser(t, e.a.PublicKey, "u", 1)
			// other's header is flushed after its answer: armed once it
			// is written and no flush is under way, the next is first's.
			waitCommitted(t, dir, e.other.Revision)
			before := dumpOf(t, e.s)
			fault.armIdle(t)
			t.Cleanup(fault.disarm)
			errs := make(chan error, 2)
			go func() { errs <- tt.first(e) }()
			select {
			case <-fault.entered: // first's records are being flushed
			case err := <-errs:
				t.Fatalf("first returned before its flush: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatal("first's records were not flushed")
			}
			second := make(chan error, 1)
			go func() { second <- tt.second(e) }()
			for deadline := time.Now().Add(5 * time.Second); len(e.s.c.in) == 0; {
				if time.Now().After(deadline) {
					close(fault.gate)
					t.Fatal("second was not queued")
				}
				time.Sleep(time.Millisecond)
			}
			close(fault.gate) // first is answered, second is built
			errFirst, errSecond := <-errs, <-second
			fault.disarm()
			if errFirst != nil {
				t.Fatalf("first: %v, want success: its records were flushed", errFirst)
			}
			switch {
			case tt.refusal != nil && !errors.Is(errSecond, tt.refusal):
				t.Errorf("second: %v, want %v", errSecond, tt.refusal)
			case tt.refusal == nil && !errors.Is(errSecond, errInjected):
				t.Errorf("second: %v, want the flush failure", errSecond)
			}
			after := dumpOf(t, e.s)
			if reflect.DeepEqual(after, before) {
				t.Errorf("first is not applied")
			}
			closeStore(t, e.s)
			e.s = open(t, dir, Options{})
			assertDump(t, dumpOf(t, e.s), after)
			if tt.refusal == nil {
				if err := tt.second(e); err != nil {
					t.Errorf("second, tried again: %v", err)
				}
			}
		})
	}
}

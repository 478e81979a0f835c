package filestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// crashImage is the store as a power loss at one moment leaves it: a
// snapshot, the journal's bytes, and the clock readings that say which
// answers came before that moment (answered) and which changes may have
// been written (started).
type crashImage struct {
	what     string
	snapshot []byte
	journal  []byte
	answered int64 // changes answered before this clock reading are decided
	started  int64 // changes submitted after it cannot be there
}

// crashRecorder hooks syncFile for one store directory. At every flush of
// its journal it takes the journal's bytes as the flush leaves them (what
// it made durable: only the committer writes the journal, and it waits in
// the flush), and the crash images between the last flush and this one:
// the previous durable bytes with only the header slots of this flush
// written, or only its records. At every flush of a snapshot it keeps the
// snapshot by ID, to pair with the journals that name it.
type crashRecorder struct {
	t     *testing.T
	dir   string
	clock *atomic.Int64

	mu       sync.Mutex
	snaps    map[uint64][]byte
	durable  map[*os.File][]byte
	images   []crashImage
	flushes  int
	failFrom int // the journal data flush that fails first; 0: none
	failEach int // and every failEach-th after it; 0: only that one
	failAll  bool
	// snapFailEach makes every snapFailEach-th flush of a snapshot fail
	// while running: a compaction that is not put in place.
	snapFailEach int
	snapFlushes  int
	running      bool // a store is open: Open itself is not made to fail
	failed       int
	off          bool // recording is over: flushes are free
}

func installCrashRecorder(t *testing.T, dir string, clock *atomic.Int64) *crashRecorder {
	t.Helper()
	r := &crashRecorder{t: t, dir: dir, clock: clock, snaps: map[uint64][]byte{}, durable: map[*os.File][]byte{}}
	orig, chunk := syncFile, journalChunk
	journalChunk = 16 << 10
	syncFile = func(f *os.File, dataOnly bool) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.off {
			return nil
		}
		if filepath.Dir(f.Name()) != r.dir {
			return orig(f, dataOnly)
		}
		base := filepath.Base(f.Name())
		switch {
		case strings.HasPrefix(base, snapshotFile):
			err := orig(f, dataOnly)
			data, rerr := os.ReadFile(f.Name())
			if rerr != nil {
				t.Errorf("read snapshot %s: %v", f.Name(), rerr)
				return err
			}
			id, ok := snapshotID(data)
			if !ok {
				t.Errorf("snapshot %s has no readable header", f.Name())
			}
			r.snaps[id] = data
			if r.running && r.snapFailEach > 0 {
				if r.snapFlushes++; r.snapFlushes%r.snapFailEach == 0 {
					r.failed++
					return errInjected
				}
			}
			return err
		case strings.HasPrefix(base, journalFile):
			return r.journalFlush(f, dataOnly, orig)
		}
		return orig(f, dataOnly)
	}
	t.Cleanup(func() { syncFile, journalChunk = orig, chunk })
	return r
}

// journalFlush flushes a journal file and takes its images. A flush made
// to fail (only while a store runs: Open is not) writes what it was given
// first, the worst case for a change answered the failure: its records are
// on the disk, and only the journal's closed header keeps them out.
func (r *crashRecorder) journalFlush(f *os.File, dataOnly bool, orig func(*os.File, bool) error) error {
	before := r.clock.Add(1)
	err := orig(f, dataOnly)
	after := r.clock.Add(1)
	data := readAllAt(r.t, f)
	if data == nil {
		return err
	}
	if prev, ok := r.durable[f]; ok {
		// A power loss during this flush: any of its pages may be on the
		// disk. Take the two halves: the header slots alone, the records
		// alone (a half equal to what the flush left is checked as that,
		// with more answered).
		slots, records := tornImages(prev, data)
		if !bytes.Equal(slots, data) {
			r.add("torn: header slots only", slots, before, after)
		}
		if !bytes.Equal(records, data) {
			r.add("torn: records only", records, before, after)
		}
	}
	r.durable[f] = data
	r.add("flushed", data, after, after)
	if !r.running {
		return err
	}
	if dataOnly {
		r.flushes++
		n := r.flushes
		switch {
		case r.failFrom == 0 || n < r.failFrom:
		case r.failAll, n == r.failFrom, r.failEach > 0 && (n-r.failFrom)%r.failEach == 0:
			r.failed++
			return errInjected
		}
	} else if r.failAll && r.failFrom > 0 && r.flushes >= r.failFrom {
		r.failed++
		return errInjected
	}
	return err
}

func (r *crashRecorder) add(what string, journal []byte, answered, started int64) {
	hdr, _, ok := pickSlot(journal)
	if !ok {
		r.t.Errorf("%s: a journal image with no valid header slot", what)
		return
	}
	snap, ok := r.snaps[hdr.snap]
	if !ok {
		r.t.Errorf("%s: no snapshot %s for a journal image", what, formatID(hdr.snap))
		return
	}
	r.images = append(r.images, crashImage{what: what, snapshot: snap, journal: bytes.Clone(journal), answered: answered, started: started})
}

func (r *crashRecorder) run(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.running = on
}

func (r *crashRecorder) stop() []crashImage {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.off = true
	return r.images
}

func readAllAt(t *testing.T, f *os.File) []byte {
	st, err := f.Stat()
	if err != nil {
		t.Errorf("stat journal: %v", err)
		return nil
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		t.Errorf("read journal: %v", err)
		return nil
	}
	return data
}

// tornImages returns prev with only the header slots of next written, and
// prev with only the rest of next written.
func tornImages(prev, next []byte) (slots, records []byte) {
	base := make([]byte, max(len(prev), len(next)))
	copy(base, prev)
	slots, records = bytes.Clone(base), bytes.Clone(base)
	copy(slots[:min(dataStart, len(next))], next)
	if len(next) > dataStart {
		copy(records[dataStart:], next[dataStart:])
	}
	return slots, records
}

func snapshotID(data []byte) (uint64, bool) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return 0, false
	}
	_, body, err := parseFrame(data[:nl])
	var sl snapshotLine
	if err != nil || json.Unmarshal(body, &sl) != nil || sl.Header == nil {
		return 0, false
	}
	id, err := parseID(sl.Header.ID)
	return id, err == nil
}

// change is one change a worker made, with its answer and when.
type change struct {
	kind     string // create, update, remove, user (durable)
	account  string
	user     string // user
	rev      uint64 // create, update: the revision answered
	err      error
	started  int64
	answered int64
}

// accountState is what an account's changes so far leave of it, as far
// as the test follows it: its revision, and its durable users.
type accountState struct {
	present bool
	rev     uint64
	users   map[string]bool
}

func (st accountState) after(c change) accountState {
	if c.err != nil {
		return st
	}
	next := accountState{present: st.present, rev: st.rev, users: map[string]bool{}}
	for u := range st.users {
		next.users[u] = true
	}
	switch c.kind {
	case opCreate, opUpdate:
		next.present, next.rev = true, c.rev
	case opRemove:
		next = accountState{users: map[string]bool{}}
	case opUser:
		next.users[c.user] = true
	}
	return next
}

// runWorkers runs workers, each making changes to accounts of its own,
// and returns every change by account, in the order made.
func runWorkers(t *testing.T, s *Store, clock *atomic.Int64, round, workers, steps int) map[string][]change {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	byAccount := map[string][]change{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			type mine struct {
				a   provision.Account
				rev uint64
			}
			var live []*mine
			record := func(c change) {
				mu.Lock()
				byAccount[c.account] = append(byAccount[c.account], c)
				mu.Unlock()
			}
			for i := range steps {
				c := change{started: clock.Add(1)}
				switch k := rng.IntN(10); {
				case len(live) == 0 || k < 3:
					a := newAccount(t, fmt.Sprintf("r%d-w%d-%d", round, w, i))
					c.kind, c.account = opCreate, a.PublicKey
					c.rev, c.err = s.CreateAccount(ctx, a)
					if c.err == nil {
						a.Revision = c.rev
						live = append(live, &mine{a: a, rev: c.rev})
					}
				case k < 6:
					m := live[rng.IntN(len(live))]
					a := m.a
					a.Settings.Quota = i + 1
					c.kind, c.account = opUpdate, a.PublicKey
					c.rev, c.err = s.UpdateAccount(ctx, a, m.rev)
					if c.err == nil {
						m.rev = c.rev
					}
				case k < 7:
					j := rng.IntN(len(live))
					m := live[j]
					c.kind, c.account = opRemove, m.a.PublicKey
					c.err = s.RemoveAccount(ctx, m.a.PublicKey, m.rev)
					live = append(live[:j], live[j+1:]...)
				case k < 9:
					m := live[rng.IntN(len(live))]
					u := newUser(t, m.a.PublicKey, "d", int64(i))
					c.kind, c.account, c.user = opUser, m.a.PublicKey, u.PublicKey
					c.err = s.AddUser(ctx, u, true)
				default:
					// A lazy user record: not followed, written with the
					// next batch.
					m := live[rng.IntN(len(live))]
					s.AddUser(ctx, newUser(t, m.a.PublicKey, "l", int64(i)), false)
					continue
				}
				c.answered = clock.Add(1)
				record(c)
			}
		})
	}
	wg.Wait()
	return byAccount
}

// checkImage opens a copy of the store as img leaves it and checks that
// every change answered success before it is there, and none answered
// the failure.
func checkImage(t *testing.T, img crashImage, byAccount map[string][]change, check, salvage bool) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, snapshotFile), img.snapshot)
	writeFile(t, filepath.Join(dir, journalFile), img.journal)
	if check {
		rep, err := Check(dir, nil)
		if err != nil || rep.Damaged() {
			t.Errorf("%s: Check: %v; damage %+v", img.what, err, rep.Damage)
		}
	}
	from := dir
	if salvage {
		from = t.TempDir()
		if err := os.Remove(from); err != nil {
			t.Fatal(err)
		}
		if rep, err := Salvage(dir, from, nil); err != nil || rep.Damaged() {
			t.Errorf("%s: Salvage: %v; damage %+v", img.what, err, rep.Damage)
		}
	}
	s, err := Open(from, Options{})
	if err != nil {
		t.Errorf("%s: Open: %v", img.what, err)
		return
	}
	defer s.Close()
	for pub, cs := range byAccount {
		var st accountState
		var unsure bool
		var failed []change
		for _, c := range cs {
			switch {
			case c.answered < img.answered:
				if c.err != nil {
					failed = append(failed, c)
				}
				st = st.after(c)
			case c.started < img.started:
				unsure = true // written or not: no answer yet
			}
		}
		if unsure {
			continue
		}
		got, err := s.Account(ctx, pub)
		switch {
		case st.present && err != nil:
			t.Errorf("%s: account %s, answered at revision %d, is missing: %v", img.what, pub, st.rev, err)
			continue
		case !st.present && err == nil:
			t.Errorf("%s: account %s is there at revision %d; its changes answered %s", img.what, pub, got.Revision, describeChanges(cs, img.answered))
			continue
		case !st.present && !errors.Is(err, provision.ErrNotFound):
			t.Errorf("%s: account %s: %v", img.what, pub, err)
			continue
		case !st.present:
			continue
		case got.Revision != st.rev:
			t.Errorf("%s: account %s has revision %d, want %d; its changes answered %s", img.what, pub, got.Revision, st.rev, describeChanges(cs, img.answered))
		}
		for u := range st.users {
			if _, err := s.User(ctx, u); err != nil {
				t.Errorf("%s: user %s of account %s, answered durable, is missing: %v", img.what, u, pub, err)
			}
		}
		for _, c := range failed {
			if c.kind != opUser {
				continue
			}
			if _, err := s.User(ctx, c.user); err == nil {
				t.Errorf("%s: user %s of account %s, answered %v, is there", img.what, c.user, pub, c.err)
			}
		}
	}
}

func describeChanges(cs []change, before int64) string {
	var b strings.Builder
	for _, c := range cs {
		if c.answered < before {
			fmt.Fprintf(&b, "[%s rev %d err %v] ", c.kind, c.rev, c.err)
		}
	}
	return b.String()
}

// TestCrashImages: a change is answered once its records are flushed, and
// a failed flush closes the journal past the last change answered. Under
// concurrent creates, updates, removes and user records, durable and
// lazy, with compactions, and flushes that fail, the store as a power
// loss leaves it at each flush of its journal, or during one, opens with
// every change answered success before then, and none answered the
// failure; Check and Salvage see no damage in it. A store that did not
// break opens again as it served.
func TestCrashImages(t *testing.T) {
	tests := []struct {
		name               string
		failFrom, failEach int
		failAll            bool
		snapFailEach       int
	}{
		{"no failures", 0, 0, false, 0},
		{"every 7th data flush fails", 5, 7, false, 0},
		{"every 3rd data flush fails", 4, 3, false, 0},
		{"every flush fails from the 20th on", 20, 0, true, 0},
		{"every 2nd compaction fails", 0, 0, false, 2},
		{"data flushes and compactions fail", 5, 9, false, 3},
	}
	steps := 20
	if raceEnabled {
		steps = 6
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock atomic.Int64
			dir := t.TempDir()
			rec := installCrashRecorder(t, dir, &clock)
			rec.failFrom, rec.failEach, rec.failAll, rec.snapFailEach = tt.failFrom, tt.failEach, tt.failAll, tt.snapFailEach
			all := map[string][]change{}
			var served *dump
			for round := range 3 {
				s, err := Open(dir, Options{CompactBytes: 6 << 10})
				if err != nil {
					t.Fatal(err)
				}
				if served != nil {
					assertDump(t, dumpOf(t, s), *served)
				}
				if round == 2 {
					closeStore(t, s)
					break
				}
				rec.run(true)
				for pub, cs := range runWorkers(t, s, &clock, round, 4, steps) {
					all[pub] = append(all[pub], cs...)
				}
				d := dumpOf(t, s)
				err = s.Close()
				rec.run(false)
				s.mu.RLock()
				broken := s.broken
				s.mu.RUnlock()
				served = &d
				if broken != nil {
					served = nil
				} else if err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			images := rec.stop()
			if (tt.failFrom > 0 || tt.snapFailEach > 0) && rec.failed == 0 {
				t.Fatal("no flush failed")
			}
			final := crashImage{what: "the store as closed", answered: clock.Add(1), started: clock.Load()}
			final.snapshot, final.journal = readFile(t, filepath.Join(dir, snapshotFile)), readFile(t, filepath.Join(dir, journalFile))
			images = append(images, final)
			t.Logf("%d images, %d flushes failed", len(images), rec.failed)
			for i, img := range images {
				checkImage(t, img, all, i%4 == 0, i%16 == 0)
				if t.Failed() {
					t.Fatalf("image %d of %d (%s)", i, len(images), img.what)
				}
			}
		})
	}
}

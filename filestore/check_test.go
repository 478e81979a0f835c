package filestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// userLine finds the first line of data after from that records a user,
// and returns its offset and the user.
func userLine(t *testing.T, data []byte, from int64) (int64, provision.User) {
	t.Helper()
	for _, off := range lineStarts(data, from, int64(len(data))) {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break
		}
		_, body, err := parseFrame(data[off : off+int64(nl)])
		if err != nil {
			continue
		}
		var l struct {
			User *provision.User `json:"user"`
		}
		if json.Unmarshal(body, &l) == nil && l.User != nil {
			return off, *l.User
		}
	}
	t.Fatal("no user line")
	return 0, provision.User{}
}

// dirContents is every file of a directory and its bytes.
func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		out[e.Name()] = string(readFile(t, filepath.Join(dir, e.Name())))
	}
	return out
}

func withoutUsers(d dump, gone ...provision.User) dump {
	out := dump{Accounts: d.Accounts, Users: map[string][]provision.User{}}
	for pub, us := range d.Users {
		us = slices.DeleteFunc(slices.Clone(us), func(u provision.User) bool { return slices.ContainsFunc(gone, u.Equal) })
		if len(us) > 0 {
			out.Users[pub] = us
		}
	}
	return out
}

func TestCheckAndSalvage(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	want := smallStore(t, dir)

	t.Run("intact", func(t *testing.T) {
		rep, err := Check(dir, nil)
		if err != nil || rep.Damaged() {
			t.Fatalf("Check of an intact store: %+v, %v", rep, err)
		}
		live, users := 0, 0
		for _, a := range want.Accounts {
			if a.Live() {
				live++
			}
			users += len(want.Users[a.PublicKey])
		}
		if rep.Accounts[provision.PhaseLive] != live || rep.Accounts[provision.PhaseDisabled] != len(want.Accounts)-live || rep.Users != users || rep.Records == 0 || rep.Seq == 0 {
			t.Errorf("Check counts %+v; want %d live, %d disabled, %d users", rep, live, len(want.Accounts)-live, users)
		}
		var out bytes.Buffer
		rep.WriteTo(&out)
		for _, s := range []string{"damage    none", "accounts  4 (2 live, 2 disabled, 0 deleted)"} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("the printed report lacks %q:\n%s", s, out.String())
			}
		}
	})

	// Damage a user line in the snapshot and a user record in the journal.
	snap := readFile(t, filepath.Join(dir, snapshotFile))
	j := readFile(t, filepath.Join(dir, journalFile))
	snapOff, snapUser := userLine(t, snap, 0)
	jOff, jUser := userLine(t, j, dataStart)
	snap[snapOff+40] ^= 1
	j[jOff+40] ^= 1
	writeFile(t, filepath.Join(dir, snapshotFile), snap)
	writeFile(t, filepath.Join(dir, journalFile), j)
	before := dirContents(t, dir)

	rep, err := Check(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDamage := []Damage{{File: filepath.Join(dir, snapshotFile), Offset: snapOff}, {File: filepath.Join(dir, journalFile), Offset: jOff}}
	if len(rep.Damage) != 2 {
		t.Fatalf("Check found %+v; want damage at %+v", rep.Damage, wantDamage)
	}
	for i, d := range rep.Damage {
		if d.File != wantDamage[i].File || d.Offset != wantDamage[i].Offset || d.What == "" {
			t.Errorf("damage %d: %+v, want %s at %d", i, d, wantDamage[i].File, wantDamage[i].Offset)
		}
	}
	if rep.Users != countUsers(want)-2 {
		t.Errorf("Check counts %d users past the damage, want %d", rep.Users, countUsers(want)-2)
	}

	t.Run("salvage", func(t *testing.T) {
		to := filepath.Join(t.TempDir(), "salvaged")
		srep, err := Salvage(dir, to, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(srep.Damage) != 2 {
			t.Errorf("Salvage reports %+v", srep.Damage)
		}
		s := open(t, to, Options{})
		assertDump(t, dumpOf(t, s), withoutUsers(want, snapUser, jUser))
		closeStore(t, s)
		if st, err := os.Stat(to); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("salvage directory: %v, %v", st.Mode(), err)
		}
	})

	t.Run("salvage refuses", func(t *testing.T) {
		full := t.TempDir()
		writeFile(t, filepath.Join(full, "something"), []byte("x"))
		for name, to := range map[string]string{"a non-empty directory": full, "the store itself": dir} {
			if _, err := Salvage(dir, to, nil); err == nil {
				t.Errorf("Salvage into %s succeeded", name)
			}
		}
		if got := dirContents(t, full); len(got) != 1 {
			t.Errorf("a refused salvage wrote into the target: %d files", len(got))
		}
	})

	t.Run("salvage of a journal without its snapshot", func(t *testing.T) {
		src := t.TempDir()
		writeFile(t, filepath.Join(src, journalFile), j)
		to := filepath.Join(t.TempDir(), "salvaged")
		srep, err := Salvage(src, to, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !srep.Damaged() {
			t.Error("a journal without its snapshot is not reported")
		}
		s := open(t, to, Options{})
		accts, _ := s.Accounts(t.Context())
		if len(accts) == 0 {
			t.Error("nothing salvaged from the journal")
		}
	})

	// Neither Check nor Salvage changed the damaged store.
	if after := dirContents(t, dir); !mapsEqual(before, after) {
		t.Error("Check or Salvage changed the store they read")
	}
}

func countUsers(d dump) int {
	n := 0
	for _, us := range d.Users {
		n += len(us)
	}
	return n
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// generationOf returns the ID the snapshot names and the one the journal's
// current header names ("" for a file not there or not readable), and
// whether a generation is being written (".new" files).
func generationOf(dir string) (snap, journal string, writing bool) {
	if data, err := os.ReadFile(filepath.Join(dir, snapshotFile)); err == nil {
		if nl := bytes.IndexByte(data, '\n'); nl > 0 {
			var sl snapshotLine
			if _, body, err := parseFrame(data[:nl]); err == nil && json.Unmarshal(body, &sl) == nil && sl.Header != nil {
				snap = sl.Header.ID
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, journalFile)); err == nil {
		if s, _, ok := pickSlot(data); ok {
			journal = formatID(s.snap)
		}
	}
	for _, n := range []string{snapshotFile + newSuffix, journalFile + newSuffix} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			writing = true
		}
	}
	return snap, journal, writing
}

// TestReadWhileTheStoreCompacts: Check and Salvage read a store that runs,
// which compacts between their read of the snapshot and their read of the
// journal: they meet the old snapshot and the new generation's journal.
// That is not damage in the store, and neither may report it as such;
// Salvage may not copy the old snapshot alone, without what the journal
// held beside it (every account acknowledged by then). Both look again.
func TestReadWhileTheStoreCompacts(t *testing.T) {
	for _, salvage := range []bool{false, true} {
		t.Run(map[bool]string{false: "Check", true: "Salvage"}[salvage], func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			s := open(t, dir, Options{CompactBytes: 8 << 10})
			created := 0
			create := func() {
				t.Helper()
				if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", created))); err != nil {
					t.Fatal(err)
				}
				created++
			}
			create()
			create()
			orig := loadHook
			t.Cleanup(func() { loadHook = orig })
			fired := false
			loadHook = func(step string) {
				if step != hookSnapshotRead || fired {
					return
				}
				fired = true
				// The store writes until it compacts, and the new
				// generation is in place.
				old, _, _ := generationOf(dir)
				deadline := time.Now().Add(10 * time.Second)
				for {
					snap, journal, writing := generationOf(dir)
					if snap != old && journal == snap && !writing {
						return
					}
					if time.Now().After(deadline) {
						t.Fatal("the store did not compact")
					}
					if snap == old {
						create()
					} else {
						time.Sleep(time.Millisecond) // the journal's rename follows
					}
				}
			}
			var rep Report
			var err error
			to := filepath.Join(t.TempDir(), "salvaged")
			if salvage {
				rep, err = Salvage(dir, to, nil)
			} else {
				rep, err = Check(dir, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !fired {
				t.Fatal("the hook did not run")
			}
			if rep.Damaged() {
				t.Errorf("damage reported in a store that has none: %+v", rep.Damage)
			}
			if n := rep.Accounts[provision.PhaseLive]; n != created {
				t.Errorf("the report counts %d accounts, the store acknowledged %d", n, created)
			}
			if salvage {
				want := dumpOf(t, s)
				c := open(t, to, Options{})
				assertDump(t, dumpOf(t, c), want)
			}
		})
	}
}

// TestCheckRefusesAnotherSealKey: `store check --seal-key` with a key that
// did not seal the store's seeds reported it intact (exit 0), and even
// noted that a start with that key seals the seeds anew, while a start with
// it refuses the store (ErrSealKey). It reports what a start refuses.
func TestCheckRefusesAnotherSealKey(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	s := open(t, dir, Options{Seal: newSealKey(t)})
	if _, err := s.CreateAccount(t.Context(), newAccount(t, "sealed")); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	other := newSealKey(t)
	if _, err := Open(dir, Options{Seal: other}); !errors.Is(err, ErrSealKey) {
		t.Fatalf("Open with another seal key: %v, want ErrSealKey", err)
	}
	rep, err := Check(dir, other)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteTo(&out)
	if !rep.Refuses() || strings.Contains(out.String(), "Open with this seal key seals them") {
		t.Fatalf("Check with another seal key: refuses %v, want a refusal and no note that it seals them:\n%s", rep.Refuses(), out.String())
	}
}

// TestSalvagePastDamageWithoutHeader: a journal whose two header slots are
// both unreadable has no committed length; a salvage reads on as if
// nothing were committed, and must still go past a damaged record to the
// intact ones after it, as it does where a header counts them.
func TestSalvagePastDamageWithoutHeader(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	want := smallStore(t, dir)
	j := readFile(t, filepath.Join(dir, journalFile))
	clear(j[:dataStart])
	jOff, jUser := userLine(t, j, dataStart)
	j[jOff+40] ^= 1
	writeFile(t, filepath.Join(dir, journalFile), j)

	rep, err := Check(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damage) != 2 || rep.Damage[1].Offset != jOff {
		t.Errorf("Check found %+v; want the header and the record at %d", rep.Damage, jOff)
	}
	to := filepath.Join(t.TempDir(), "salvaged")
	if _, err := Salvage(dir, to, nil); err != nil {
		t.Fatal(err)
	}
	s := open(t, to, Options{})
	assertDump(t, dumpOf(t, s), withoutUsers(want, jUser))
	closeStore(t, s)
}

// TestCheckNotesTornTailAfterKeptRecords: a journal whose last batch lies
// past the header's committed length (the header not rewritten after it,
// or its slot's write torn), kept, and a torn record after it: Check must
// say the torn tail is there, as it does when no record was kept, since
// Open leaves it out. Past a torn slot it has a note of its own, so the
// intact header is a case of its own too.
func TestCheckNotesTornTailAfterKeptRecords(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	smallStore(t, dir)
	orig := readFile(t, filepath.Join(dir, journalFile))
	// Records kept past the committed length: with the current header
	// slot intact (its rewrite after the last batch not done yet), and
	// past the older slot (the current one torn), a case of its own.
	for name, j := range map[string][]byte{
		"header not rewritten": lastRecordUncommitted(t, orig),
		"older slot in use":    currentSlotTorn(t, orig),
	} {
		t.Run(name, func(t *testing.T) { tornTailAfterKeptRecordsNoted(t, dir, j) })
	}
}

// lastRecordUncommitted moves the current header slot's committed length
// back to the start of the last record, as a crash before the header's
// rewrite after that record's batch leaves it: both slots readable, and
// the last record past the committed length.
func lastRecordUncommitted(t *testing.T, j []byte) []byte {
	t.Helper()
	cur, _, _ := pickSlot(j)
	b := recordBoundaries(t, j)
	j = slices.Clone(j)
	cur.end, cur.seq = b[len(b)-2], cur.seq-1
	copy(j[slotOffset(cur.gen):], cur.encode())
	return j
}

func tornTailAfterKeptRecordsNoted(t *testing.T, dir string, j []byte) {
	t.Helper()
	j = slices.Clone(j)
	last := int64(len(j))
	for last > dataStart && j[last-1] == 0 {
		last--
	}
	// Half a record past the last one: a write a crash cut short.
	copy(j[last:], []byte("17 deadbeef {\"op\":\"us"))
	writeFile(t, filepath.Join(dir, journalFile), j)

	rep, err := Check(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Unacknowledged == 0 || rep.Damaged() {
		t.Fatalf("Check: %d records kept past the committed length, damage %v; want some kept and no damage", rep.Unacknowledged, rep.Damage)
	}
	noted := false
	for _, n := range rep.Notes {
		noted = noted || strings.Contains(n, "torn tail")
	}
	if !noted {
		t.Errorf("Check's notes %q do not mention the torn tail Open leaves out", rep.Notes)
	}
}

// TestCheckTornTailPastAnUnreadableSlot: the current header slot
// unreadable, the older one in use, and the record past the older one's
// committed length damaged. That record's batch was answered (its header
// was written, in the slot now unreadable): Check must not call the tail
// Open leaves out "never acknowledged".
func TestCheckTornTailPastAnUnreadableSlot(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	smallStore(t, dir)
	j := currentSlotTorn(t, readFile(t, filepath.Join(dir, journalFile)))
	j[journalEnd(t, j)+40] ^= 1
	writeFile(t, filepath.Join(dir, journalFile), j)

	rep, err := Check(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	noted := false
	for _, n := range rep.Notes {
		if strings.Contains(n, "torn tail") {
			noted = true
			if strings.Contains(n, "never acknowledged") {
				t.Errorf("Check calls the tail past an unreadable header slot never acknowledged: %q", n)
			}
		}
	}
	if !noted {
		t.Errorf("Check's notes %q do not mention the torn tail Open leaves out", rep.Notes)
	}
}

// TestSalvageWithoutTheSnapshotHeader: a snapshot whose header line is
// damaged (the journal beside it empty, as every start leaves it) has lost
// the store's sequence, not its accounts. The salvaged copy must go on
// past every revision it holds: given sequence 0, its next change was
// revision 1, an account's revision went backwards, and once a start
// folded that change into a snapshot of sequence 1 the copy no longer
// opened (an account's revision outside the snapshot's sequence).
func TestSalvageWithoutTheSnapshotHeader(t *testing.T) {
	fastDisk(t)
	ctx := context.Background()
	dir := t.TempDir()
	fill(t, open(t, dir, Options{}), "old")
	s := open(t, dir, Options{}) // folds the journal: it is empty
	want := dumpOf(t, s)
	closeStore(t, s)
	snap := readFile(t, filepath.Join(dir, snapshotFile))
	snap[20] ^= 1 // in the header line's sequence number
	writeFile(t, filepath.Join(dir, snapshotFile), snap)

	to := filepath.Join(t.TempDir(), "salvaged")
	rep, err := Salvage(dir, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damage) == 0 || rep.Damage[0].Offset != 0 {
		t.Fatalf("Salvage found %+v; want the snapshot's header", rep.Damage)
	}
	s = open(t, to, Options{})
	assertDump(t, dumpOf(t, s), want)
	accounts, err := s.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := accounts[0]
	a.JWT = accountJWT(t, a.PublicKey, a.Name, mustPub(t, a.SigningKeys[0].Seed))
	rev, err := s.UpdateAccount(ctx, a, a.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= a.Revision {
		t.Errorf("an update of account %q at revision %d made revision %d: backwards", a.Name, a.Revision, rev)
	}
	closeStore(t, s)
	// The first start folds the change into a new snapshot, the second
	// reads that snapshot.
	for i := range 2 {
		s, err = Open(to, Options{})
		if err != nil {
			t.Fatalf("start %d of the salvaged store after a change: %v", i+1, err)
		}
		closeStore(t, s)
	}
}

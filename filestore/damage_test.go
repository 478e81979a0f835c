package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// openAfterDamage opens a damaged copy of a store and checks the contract:
// either Open fails with a *Damage naming the damaged file, at or before
// the damaged byte, or it returns exactly the acknowledged state.
func openAfterDamage(t *testing.T, dir, file string, at int64, want dump) (damaged bool) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		var d *Damage
		if !errors.As(err, &d) || !errors.Is(err, ErrDamaged) {
			t.Fatalf("%s byte %d: Open failed with %v, not a *Damage", file, at, err)
		}
		if d.File != filepath.Join(dir, file) {
			t.Fatalf("%s byte %d: damage reported in %s: %v", file, at, d.File, err)
		}
		if at >= 0 && (d.Offset > at+1 || d.Offset < at-16<<10) {
			t.Fatalf("%s byte %d: damage reported at byte %d: %v", file, at, d.Offset, err)
		}
		return true
	}
	got := dumpOf(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertDump(t, got, want)
	return false
}

// TestEveryByte changes bytes of each file of a small store in turn: a
// sample of the snapshot's and the journal's records (every third byte,
// and every line start and line end), the header slots, and the zeroed
// space after the records. Each change must be found as damage, or, where
// no acknowledged byte was touched, the store must open whole.
func TestEveryByte(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	want := smallStore(t, dir)
	orig := files(t, dir)
	end := journalEnd(t, orig[journalFile])
	stride := int64(3)
	if raceEnabled {
		stride = 13 // the race detector makes each Open ten times slower
	}
	type change struct {
		file string
		off  int64
	}
	var changes []change
	for _, file := range []string{snapshotFile, journalFile} {
		data := orig[file]
		for off := int64(0); off < int64(len(data)); off++ {
			inRecords := file == snapshotFile || (off >= dataStart && off < end+200)
			inSlot := file == journalFile && off%journalSlotSize < 200 && off < dataStart
			edge := data[off] == '\n' || (off > 0 && data[off-1] == '\n')
			switch {
			case (inRecords || inSlot) && (off%stride == 0 || edge):
			case off%509 == 0: // zeroed space, sampled
			default:
				continue
			}
			changes = append(changes, change{file, off})
		}
	}
	// Two workers, each with a store directory of its own.
	const workers = 2
	for w := range workers {
		t.Run(fmt.Sprint("worker-", w), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			counts := map[string]int{}
			for i := w; i < len(changes); i += workers {
				c := changes[i]
				damaged := slices.Clone(orig[c.file])
				damaged[c.off] ^= 0x01
				restore(t, dir, orig)
				writeFile(t, filepath.Join(dir, c.file), damaged)
				committed := c.file == snapshotFile || (c.off >= dataStart && c.off < end)
				found := openAfterDamage(t, dir, c.file, c.off, want)
				switch {
				case found && !committed:
					// Past the committed records, in a slot or the zeroed
					// space, a change is a torn write at worst.
					t.Fatalf("%s byte %d (committed length %d): a change outside the committed records was called damage", c.file, c.off, end)
				case !found && committed:
					t.Fatalf("%s byte %d: a changed committed byte was not noticed", c.file, c.off)
				case found:
					counts[c.file+" found damaged"]++
				default:
					counts[c.file+" opened whole"]++
				}
			}
			t.Logf("%d changes: %v", len(changes)/workers, counts)
		})
	}
}

// recordBoundaries returns where each committed journal record starts, and
// the committed length.
func recordBoundaries(t *testing.T, j []byte) []int64 {
	t.Helper()
	end := journalEnd(t, j)
	return append(lineStarts(j, dataStart, end), end)
}

func TestCuts(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	want := smallStore(t, dir)
	orig := files(t, dir)
	j, snap := orig[journalFile], orig[snapshotFile]
	end := journalEnd(t, j)
	type cut struct {
		file string
		at   int64
		data []byte
	}
	var cuts []cut
	for _, at := range recordBoundaries(t, j) {
		if at < end {
			// Cut short; and cut then zero-filled back to its size, as
			// preallocated space would be.
			cuts = append(cuts, cut{journalFile, at, j[:at]})
			cuts = append(cuts, cut{journalFile, at, append(slices.Clone(j[:at]), make([]byte, int64(len(j))-at)...)})
		}
	}
	for _, at := range lineStarts(snap, 0, int64(len(snap))) {
		cuts = append(cuts, cut{snapshotFile, at, snap[:at]})
	}
	cuts = append(cuts, cut{journalFile, 0, nil}, cut{journalFile, journalSlotSize, j[:journalSlotSize]})
	for _, c := range cuts {
		restore(t, dir, orig)
		writeFile(t, filepath.Join(dir, c.file), c.data)
		if !openAfterDamage(t, dir, c.file, c.at, want) {
			t.Fatalf("%s cut at byte %d (%d bytes left) was accepted", c.file, c.at, len(c.data))
		}
	}
	// Cut past the committed records: only zeroed space is lost.
	restore(t, dir, orig)
	writeFile(t, filepath.Join(dir, journalFile), j[:end])
	if openAfterDamage(t, dir, journalFile, end, want) {
		t.Fatal("a journal cut right after its committed records was called damage")
	}
	t.Logf("%d cuts, each found", len(cuts))
}

func TestDamageCases(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	want := smallStore(t, dir)
	orig := files(t, dir)
	j, snap := orig[journalFile], orig[snapshotFile]
	bounds := recordBoundaries(t, j)
	mid := bounds[len(bounds)/2]
	snapMid := lineStarts(snap, 0, int64(len(snap)))[3]
	zeros := make([]byte, 4096)
	insert := func(b []byte, at int64, ins []byte) []byte {
		return slices.Concat(b[:at], ins, b[at:])
	}
	overwrite := func(b []byte, at int64, with []byte) []byte {
		b = slices.Clone(b)
		copy(b[at:], with)
		return b
	}
	tests := []struct {
		name    string
		files   map[string][]byte // nil: removed
		file    string            // where the damage must be named
		at      int64
		damaged bool
	}{
		{"journal removed", map[string][]byte{journalFile: nil}, journalFile, 0, true},
		{"snapshot removed", map[string][]byte{snapshotFile: nil}, snapshotFile, 0, true},
		{"journal emptied", map[string][]byte{journalFile: {}}, journalFile, 0, true},
		{"snapshot emptied", map[string][]byte{snapshotFile: {}}, snapshotFile, 0, true},
		{"NUL at a journal line start", map[string][]byte{journalFile: overwrite(j, mid, []byte{0})}, journalFile, mid, true},
		{"NUL at a snapshot line start", map[string][]byte{snapshotFile: overwrite(snap, snapMid, []byte{0})}, snapshotFile, snapMid, true},
		{"4 KiB of zeros over journal records", map[string][]byte{journalFile: overwrite(j, mid, zeros)}, journalFile, mid, true},
		{"4 KiB of zeros inserted at a journal boundary", map[string][]byte{journalFile: insert(j, mid, zeros)}, journalFile, mid, true},
		{"4 KiB of zeros inserted at the first record", map[string][]byte{journalFile: insert(j, dataStart, zeros)}, journalFile, dataStart, true},
		{"4 KiB of zeros inserted at a snapshot boundary", map[string][]byte{snapshotFile: insert(snap, snapMid, zeros)}, snapshotFile, snapMid, true},
		{"a journal record removed", map[string][]byte{journalFile: slices.Concat(j[:mid], j[bounds[len(bounds)/2+1]:], make([]byte, bounds[len(bounds)/2+1]-mid))}, journalFile, mid, true},
		{"a snapshot line removed", map[string][]byte{snapshotFile: slices.Concat(snap[:snapMid], snap[lineStarts(snap, 0, int64(len(snap)))[4]:])}, snapshotFile, snapMid, true},
		{"a journal record doubled", map[string][]byte{journalFile: insert(j, mid, j[mid:bounds[len(bounds)/2+1]])}, journalFile, bounds[len(bounds)/2+1], true},
		{"the older header slot unreadable", map[string][]byte{journalFile: olderSlotZeroed(t, j)}, journalFile, -1, false},
		{"the current header slot torn", map[string][]byte{journalFile: currentSlotTorn(t, j)}, journalFile, -1, false},
		{"both header slots unreadable", map[string][]byte{journalFile: overwrite(overwrite(j, 0, []byte("x")), journalSlotSize, []byte("x"))}, journalFile, 0, true},
	}
	// A journal from another generation of this store: valid in itself,
	// but not this snapshot's.
	s := open(t, dir, Options{})
	closeStore(t, s)
	other := files(t, dir)
	tests = append(tests, struct {
		name    string
		files   map[string][]byte
		file    string
		at      int64
		damaged bool
	}{"the journal of another snapshot", map[string][]byte{journalFile: other[journalFile]}, journalFile, -1, true})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore(t, dir, orig)
			for n, b := range tt.files {
				p := filepath.Join(dir, n)
				if b == nil {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeFile(t, p, b)
			}
			if got := openAfterDamage(t, dir, tt.file, tt.at, want); got != tt.damaged {
				t.Fatalf("damaged = %v, want %v", got, tt.damaged)
			}
			if !tt.damaged {
				return
			}
			// Check finds it too, and says where.
			rep, err := Check(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !rep.Damaged() || rep.Damage[0].File != filepath.Join(dir, tt.file) {
				t.Fatalf("Check reports %+v", rep.Damage)
			}
		})
	}
}

func olderSlotZeroed(t *testing.T, j []byte) []byte {
	t.Helper()
	cur, _, _ := pickSlot(j)
	j = slices.Clone(j)
	older := slotOffset(cur.gen + 1)
	copy(j[older:older+journalSlotSize], make([]byte, journalSlotSize))
	return j
}

// currentSlotTorn cuts the current slot's line in half, as a crash while
// writing it leaves it: the older slot's committed length is used, and the
// valid records past it are kept.
func currentSlotTorn(t *testing.T, j []byte) []byte {
	t.Helper()
	cur, _, _ := pickSlot(j)
	j = slices.Clone(j)
	at := slotOffset(cur.gen)
	copy(j[at+60:at+journalSlotSize], make([]byte, journalSlotSize-60))
	return j
}

// rewriteLine changes the JSON of the line that starts at off and gives it
// a valid checksum, as damage that a checksum cannot see would.
func rewriteLine(t *testing.T, data []byte, off int64, change func(map[string]any)) []byte {
	t.Helper()
	nl := int64(bytes.IndexByte(data[off:], '\n'))
	seq, body, err := parseFrame(data[off : off+nl])
	if err != nil {
		t.Fatalf("line at %d: %v", off, err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	nb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	line := appendFrame(nil, seq, nb)
	return slices.Concat(data[:off], line, data[off+nl+1:])
}

// TestChangedSeed proves the seed check: a seed changed on disk, with its
// line's checksum made valid again, is found and named by account.
func TestChangedSeed(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	smallStore(t, dir)
	orig := files(t, dir)
	donor := newAccount(t, "donor")

	// The first line of each file that holds an account with seeds.
	find := func(data []byte, from int64) (int64, string) {
		for _, off := range lineStarts(data, from, int64(len(data))) {
			_, body, err := parseFrame(data[off : off+int64(bytes.IndexByte(data[off:], '\n'))])
			if err != nil {
				continue
			}
			var l struct {
				Account *diskAccount `json:"account"`
			}
			if json.Unmarshal(body, &l) == nil && l.Account != nil && l.Account.IdentitySeed != "" {
				return off, l.Account.PublicKey
			}
		}
		t.Fatal("no account with seeds")
		return 0, ""
	}
	changeChar := func(s string) string {
		c := byte('A')
		if s[30] == 'A' {
			c = 'B'
		}
		return s[:30] + string(c) + s[31:]
	}
	type change struct {
		name string
		f    func(acct map[string]any)
	}
	changes := []change{
		{"identity seed character", func(a map[string]any) { a["identity_seed"] = changeChar(a["identity_seed"].(string)) }},
		{"identity seed of another account", func(a map[string]any) { a["identity_seed"] = string(donor.IdentitySeed) }},
		{"signing seed character", func(a map[string]any) {
			sk := a["signing_keys"].([]any)[0].(map[string]any)
			sk["seed"] = changeChar(sk["seed"].(string))
		}},
		{"signing seed of another key", func(a map[string]any) {
			a["signing_keys"].([]any)[0].(map[string]any)["seed"] = string(donor.SigningKeys[0].Seed)
		}},
	}
	for _, file := range []string{snapshotFile, journalFile} {
		from := int64(0)
		if file == journalFile {
			from = dataStart
		}
		off, pub := find(orig[file], from)
		for _, c := range changes {
			t.Run(file+"/"+c.name, func(t *testing.T) {
				restore(t, dir, orig)
				writeFile(t, filepath.Join(dir, file), rewriteLine(t, orig[file], off, func(m map[string]any) {
					acct := m["account"].(map[string]any)
					c.f(acct)
				}))
				_, err := Open(dir, Options{})
				var d *Damage
				if !errors.As(err, &d) || d.File != filepath.Join(dir, file) || d.Offset != off || !strings.Contains(d.What, pub) {
					t.Fatalf("Open: %v; want damage at %s byte %d naming account %s", err, file, off, pub)
				}
				for _, seed := range []provision.Seed{donor.IdentitySeed, donor.SigningKeys[0].Seed} {
					if strings.Contains(err.Error(), string(seed)) {
						t.Fatalf("the error holds a seed: %v", err)
					}
				}
				t.Log(err)
			})
		}
	}
}

// TestChangedSealedSeed: a sealed seed changed on disk does not open.
func TestChangedSealedSeed(t *testing.T) {
	fastDisk(t)
	dir := t.TempDir()
	key := newSealKey(t)
	s := open(t, dir, Options{Seal: key})
	a := newAccount(t, "sealed")
	if _, err := s.CreateAccount(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	j := readFile(t, filepath.Join(dir, journalFile))
	writeFile(t, filepath.Join(dir, journalFile), rewriteLine(t, j, dataStart, func(m map[string]any) {
		acct := m["account"].(map[string]any)
		sealed := acct["identity_seed"].(string)
		acct["identity_seed"] = sealed[:len(sealed)-10] + "AAAAAAAAA="
	}))
	_, err := Open(dir, Options{Seal: key})
	var d *Damage
	if !errors.As(err, &d) || d.Offset != dataStart || !strings.Contains(d.What, a.PublicKey) {
		t.Fatalf("Open: %v; want damage at byte %d naming %s", err, dataStart, a.PublicKey)
	}
}

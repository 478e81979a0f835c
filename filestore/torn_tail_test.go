package filestore

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOpenLogsATornTail: a journal whose last record a crash tore (or
// damaged) past the committed length opens without it, as it should, and
// the start says so in its log, as Check does: records that may have been
// answered are not dropped without a word. With the current header slot
// torn too, the tail may hold an answered change.
func TestOpenLogsATornTail(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	smallStore(t, dir)
	orig := files(t, dir)
	j := orig[journalFile]
	end := journalEnd(t, j)
	// The last record, its second half gone: a write a crash cut short.
	starts := lineStarts(j, dataStart, end)
	last := starts[len(starts)-1]
	mid := last + (end-last)/2
	tornRecord := func(j []byte) []byte {
		j = slices.Clone(j)
		copy(j[mid:end], make([]byte, end-mid))
		return j
	}
	// Past the committed length: the header counts up to the record
	// before it, as when its header's write was never made.
	uncounted := func(j []byte) []byte {
		cur, _, _ := pickSlot(j)
		next := cur
		next.gen++
		next.end, next.seq = last, cur.seq-1
		j = slices.Clone(j)
		copy(j[slotOffset(next.gen):slotOffset(next.gen)+journalSlotSize], make([]byte, journalSlotSize))
		copy(j[slotOffset(next.gen):], next.encode())
		return j
	}
	for _, tt := range []struct {
		name string
		j    []byte
		want string
	}{
		{"past the committed length", tornRecord(uncounted(j)), "torn tail"},
		{"past an older header slot", tornRecord(currentSlotTorn(t, j)), "may hold changes that were answered"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := t.TempDir()
			for n, b := range map[string][]byte{snapshotFile: orig[snapshotFile], journalFile: tt.j} {
				if err := os.WriteFile(filepath.Join(sub, n), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Check(sub, nil)
			if err != nil || rep.Damaged() || !strings.Contains(strings.Join(rep.Notes, "\n"), tt.want) {
				t.Fatalf("Check: %v, damage %+v, notes %q: the case is not built as meant", err, rep.Damage, rep.Notes)
			}
			log, buf := newLog()
			s, err := Open(sub, Options{Logger: log})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			closeStore(t, s)
			if !bytes.Contains([]byte(buf.String()), []byte(tt.want)) {
				t.Fatalf("Open left the torn tail out without saying so (want %q); its log:\n%s", tt.want, buf)
			}
		})
	}
}

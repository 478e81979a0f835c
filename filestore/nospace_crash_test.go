package filestore

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/testenv"
)

// TestStartOnFullDiskAfterACrash: a store killed between an answer and
// the flush of the header that counts it (the commit's usual window) keeps
// the answered records past the header's committed length. Restarted on a
// full disk, it goes on with its journal, as an intact one does (README: only
// a journal that a failed write closed needs room before it starts), and
// has the answered change.
func TestStartOnFullDiskAfterACrash(t *testing.T) {
	for _, torn := range []bool{false, true} {
		t.Run(fmt.Sprint("torn tail ", torn), func(t *testing.T) { startOnFullDiskAfterACrash(t, torn) })
	}
}

// startOnFullDiskAfterACrash: with torn, the crash (a power loss) also
// left part of a batch that was never answered after the records kept.
func startOnFullDiskAfterACrash(t *testing.T, torn bool) {
	smallJournal(t, 16<<10)
	ctx := context.Background()
	disk := testenv.SmallDisk(t, "1m")
	dir := filepath.Join(disk, "store")
	s := open(t, dir, Options{})
	var made []provision.Account
	var revs []uint64
	for i := range 3 {
		a := newAccount(t, fmt.Sprint("a", i))
		rev, err := s.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		made, revs = append(made, a), append(revs, rev)
	}
	closeStore(t, s)

	// The journal as a kill -9 leaves it once the last create was
	// answered, before its header was flushed: the current slot counts the
	// first two creates only.
	jpath := filepath.Join(dir, journalFile)
	data := readFile(t, jpath)
	hdr, _, ok := pickSlot(data)
	if !ok {
		t.Fatal("no header")
	}
	starts := lineStarts(data, dataStart, hdr.end)
	if len(starts) != 3 {
		t.Fatalf("%d records in the journal, want 3", len(starts))
	}
	hdr.end, hdr.seq = starts[2], revs[1]
	copy(data[slotOffset(hdr.gen):], hdr.encode())
	f, err := os.OpenFile(jpath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data[:dataStart], 0); err != nil {
		t.Fatal(err)
	}
	if torn {
		// Half of a record of the next batch, its sequence the next one.
		third := data[starts[2]:]
		third = third[:bytes.IndexByte(third, '\n')+1]
		if _, err := f.WriteAt(third[:len(third)/2], starts[2]+int64(len(third))); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	room := fillDisk(t, disk)

	log, logs := newLog()
	s, err = Open(dir, Options{Logger: log})
	if err != nil {
		t.Fatalf("open a store killed after an answer, on a full disk: %v", err)
	}
	for _, a := range made {
		if _, err := s.Account(ctx, a.PublicKey); err != nil {
			t.Errorf("account %s after a start on a full disk: %v", a.Name, err)
		}
	}
	if !strings.Contains(logs.String(), "waits for room") {
		t.Errorf("the start does not say the new snapshot waits for room:\n%s", logs.String())
	}
	b := newAccount(t, "b")
	if _, err := s.CreateAccount(ctx, b); err != nil {
		t.Fatalf("create into the journal's zeroed space: %v", err)
	}
	made = append(made, b)
	want := dumpOf(t, s)
	closeStore(t, s)
	room()

	s = reopenHolds(t, dir, want, made, "after a start with room")
	closeStore(t, s)
}

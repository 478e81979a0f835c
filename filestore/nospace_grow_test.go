package filestore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/testenv"
)

// TestJournalGrowsIntoTheRoomLeft: the journal grows by a chunk of zeroed
// space at a time (4 MiB). On a disk with less room than a chunk, but room
// for many records, the change that reached the chunk's end failed, the
// store could write no new snapshot (its journal is a chunk too) and
// refused every change until restarted, and a restart refused to start
// until room was made: a service with megabytes free stopped. The journal
// must go on into the room there is.
func TestJournalGrowsIntoTheRoomLeft(t *testing.T) {
	smallJournal(t, 256<<10)
	ctx := context.Background()
	disk := testenv.SmallDisk(t, "2m")
	dir := filepath.Join(disk, "store")
	s := open(t, dir, Options{})
	defer s.Close()
	if _, err := s.CreateAccount(ctx, newAccount(t, "first")); err != nil {
		t.Fatal(err)
	}
	fillDisk(t, disk)
	// Room for about 60 records, not for a chunk.
	filler := filepath.Join(disk, "filler")
	fi, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler, fi.Size()-96<<10); err != nil {
		t.Fatal(err)
	}
	jpath := filepath.Join(dir, journalFile)
	start, err := os.Stat(jpath)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i == 2000 {
			t.Fatal("the journal did not grow")
		}
		if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i))); err != nil {
			var st syscall.Statfs_t
			syscall.Statfs(disk, &st)
			t.Fatalf("create %d failed with %d KiB free on the disk: %v (broken: %v)", i, st.Bavail*uint64(st.Bsize)>>10, err, s.Broken())
		}
		if fi, err := os.Stat(jpath); err != nil {
			t.Fatal(err)
		} else if fi.Size() > start.Size() {
			break
		}
	}
	if _, err := s.CreateAccount(ctx, newAccount(t, "after")); err != nil {
		t.Fatalf("create after the journal grew: %v", err)
	}
	want := dumpOf(t, s)
	closeStore(t, s)
	s = open(t, dir, Options{})
	assertDump(t, dumpOf(t, s), want)
}

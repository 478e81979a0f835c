package filestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/testenv"
)

// fillDisk writes a file in dir until the disk has no room, and returns
// the function that removes it.
func fillDisk(t *testing.T, dir string) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill the disk: %v", err)
			}
			break
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// checkModes fails the test for a file in dir readable by others, or for
// a file the store leaves behind besides its own.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		st, err := d.Info()
		if err != nil {
			t.Fatal(err)
		}
		if d.IsDir() {
			if st.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %v, want 0700", path, st.Mode().Perm())
			}
			return nil
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, st.Mode().Perm())
		}
		if strings.HasSuffix(path, newSuffix) {
			t.Errorf("%s left behind", path)
		}
		return nil
	})
}

// TestFullDisk: on a disk with no room (a small tmpfs: a real ENOSPC), and
// a umask that takes nothing away, a write fails with ErrFull (507) and is
// not applied, and the store leaves nothing behind but its own files, mode
// 0600 in a 0700 directory. Once there is room, a reopen has everything
// acknowledged and takes writes.
func TestFullDisk(t *testing.T) {
	smallJournal(t, 16<<10)
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	ctx := context.Background()
	disk := testenv.SmallDisk(t, "1m")
	dir := filepath.Join(disk, "store")
	key := newSealKey(t)
	s := open(t, dir, Options{Seal: key})
	for i := range 3 {
		if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	room := fillDisk(t, disk)
	var failed provision.Account
	for i := 0; failed.PublicKey == ""; i++ {
		if i == 200 {
			t.Fatal("no write failed on a full disk")
		}
		a := newAccount(t, fmt.Sprint("b", i))
		_, err := s.CreateAccount(ctx, a)
		if err != nil {
			if !errors.Is(err, provision.ErrFull) || errors.Is(err, provision.ErrFileSizeLimit) {
				t.Fatalf("create on a full disk: %v, want ErrFull, not ErrFileSizeLimit", err)
			}
			// The journal, by its name: not a leftover's.
			if want := "write " + filepath.Join(dir, journalFile) + ":"; !strings.Contains(err.Error(), want) {
				t.Errorf("create on a full disk: %v, want it to name the journal (%q)", err, want)
			}
			failed = a
		}
	}
	if _, err := s.Account(ctx, failed.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("the failed account is applied: %v", err)
	}
	if _, err := s.CreateAccount(ctx, newAccount(t, "still-full")); !errors.Is(err, provision.ErrFull) {
		t.Errorf("create on the still full disk: %v, want ErrFull", err)
	}
	checkModes(t, dir)
	want := dumpOf(t, s)
	room()
	s.Close()

	s = open(t, dir, Options{Seal: key})
	assertDump(t, dumpOf(t, s), want)
	if _, err := s.CreateAccount(ctx, failed); err != nil {
		t.Errorf("create after a reopen with room: %v", err)
	}
	checkModes(t, dir)
}

// TestCompactionOnFullDisk: a compaction that fails for want of room
// leaves the old generation in use and takes nothing of the disk with it,
// so that the journal can still grow into the room that is left.
func TestCompactionOnFullDisk(t *testing.T) {
	smallJournal(t, 16<<10)
	ctx := context.Background()
	disk := testenv.SmallDisk(t, "1m")
	dir := filepath.Join(disk, "store")
	log, logs := newLog()
	s := open(t, dir, Options{Logger: log, CompactBytes: 4 << 10})
	fillDisk(t, disk)
	// Room for one more chunk of the journal, not for a new generation
	// (a snapshot and a journal chunk).
	filler := filepath.Join(disk, "filler")
	st, err := os.Stat(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filler, st.Size()-journalChunk); err != nil {
		t.Fatal(err)
	}
	// Until the journal has grown by a chunk, and a few records past.
	grown := -1
	for i := 0; grown < 0 || i < grown+3; i++ {
		if i == 200 {
			t.Fatal("the journal did not grow")
		}
		_, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i)))
		if err != nil {
			t.Fatalf("create %d: %v\n%s", i, err, logs.String())
		}
		st, err := os.Stat(filepath.Join(dir, journalFile))
		if err != nil {
			t.Fatal(err)
		}
		if grown < 0 && st.Size() > journalChunk {
			grown = i
		}
	}
	if !strings.Contains(logs.String(), "compaction failed") {
		t.Errorf("no compaction failed:\n%s", logs.String())
	}
	checkModes(t, dir)
}

// TestStartOnFullDisk: a start on a disk with no room opens an intact
// store whose journal holds records, as the store running on that disk
// goes on with its journal: the new snapshot that would fold them in
// waits for room (the log says so), reads are served, and changes go
// into the journal's zeroed space while it has some (507 past it). Once
// there is room, a restart has everything acknowledged. Refused, an
// instance restarted on a full disk served nothing, not even reads.
func TestStartOnFullDisk(t *testing.T) {
	smallJournal(t, 16<<10)
	ctx := context.Background()
	disk := testenv.SmallDisk(t, "1m")
	dir := filepath.Join(disk, "store")
	s := open(t, dir, Options{})
	var made []provision.Account
	for i := range 3 {
		a := newAccount(t, fmt.Sprint("a", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		made = append(made, a)
	}
	closeStore(t, s)
	room := fillDisk(t, disk)

	log, logs := newLog()
	s, err := Open(dir, Options{Logger: log})
	if err != nil {
		t.Fatalf("open an intact store on a full disk: %v", err)
	}
	for _, a := range made {
		if _, err := s.Account(ctx, a.PublicKey); err != nil {
			t.Errorf("account %s after a start on a full disk: %v", a.Name, err)
		}
	}
	if !strings.Contains(logs.String(), "waits for room") {
		t.Errorf("the start does not say the new snapshot waits for room:\n%s", logs.String())
	}
	// Into the journal's zeroed space, then 507.
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("no write failed on a full disk")
		}
		a := newAccount(t, fmt.Sprint("b", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			if !errors.Is(err, provision.ErrFull) {
				t.Fatalf("create on a full disk: %v, want ErrFull", err)
			}
			break
		}
		made = append(made, a)
	}
	want := dumpOf(t, s)
	s.Close()
	room()

	reopenHolds(t, dir, want, made, "after a start with room")
	checkModes(t, dir)
}

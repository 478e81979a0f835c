//go:build linux

package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/provision"
)

// limitFileSize sets the process's file size limit (RLIMIT_FSIZE, as
// ulimit -f does) to limit, or skips the test where it cannot. set changes
// it again, as prlimit does to a running process; lift puts the limit the
// process had back, once, and the test's end does if it has not. The
// limit is the whole process's: its tests are not parallel.
func limitFileSize(t *testing.T, limit uint64) (set func(uint64), lift func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skipf("cannot set RLIMIT_FSIZE: %v", err)
	}
	set = func(limit uint64) {
		t.Helper()
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
			t.Fatalf("set RLIMIT_FSIZE: %v", err)
		}
	}
	lifted := false
	lift = func() {
		if !lifted {
			lifted = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatalf("restore RLIMIT_FSIZE: %v", err)
			}
		}
	}
	t.Cleanup(lift)
	return set, lift
}

// TestFileSizeLimit: a process whose files may not grow past a limit
// (ulimit -f, systemd's LimitFSIZE; Go ignores the SIGXFSZ, so a write
// past it fails with EFBIG) has, like one on a full disk, no room for the
// journal: a change that needs more fails with ErrFull (507) and
// ErrFileSizeLimit (the 507 says to raise the limit, not to make room on
// the disk), saying which limit, and is not applied, and every
// acknowledged change is there after a restart. It failed with a bare "file too large" (500), or, once no new
// snapshot fitted either, a broken store's 503, and the journal did not
// grow into the room the limit left as it does into a disk's. Its log
// line said only "file too large"; it says the limit.
//
// The limit is the whole process's: the test is not parallel, so no other
// test writes while it is set.
func TestFileSizeLimit(t *testing.T) {
	smallJournal(t, 16<<10)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	log, logs := newLog()
	s := open(t, dir, Options{Logger: log})
	defer func() { s.Close() }()
	for i := range 3 {
		if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("a", i))); err != nil {
			t.Fatal(err)
		}
	}
	// Not a multiple of the chunk: the journal's last growth is a part of one.
	const limit = 40 << 10
	_, lift := limitFileSize(t, limit)

	jpath := filepath.Join(dir, journalFile)
	var made, failed []provision.Account
	var size int64 // the journal's, after the last create that passed
	for i := 0; len(failed) < 3; i++ {
		if i == 400 {
			t.Fatal("no write failed past the file size limit")
		}
		a := newAccount(t, fmt.Sprint("b", i))
		_, err := s.CreateAccount(ctx, a)
		if err == nil {
			made = append(made, a)
			fi, err := os.Stat(jpath)
			if err != nil {
				t.Fatal(err)
			}
			size = fi.Size()
			continue
		}
		if !errors.Is(err, provision.ErrFull) {
			t.Fatalf("create %d past the file size limit: %v, want ErrFull", i, err)
		}
		if !errors.Is(err, provision.ErrFileSizeLimit) || !strings.Contains(err.Error(), "file size limit") {
			t.Errorf("create %d: %v, want ErrFileSizeLimit, naming the file size limit", i, err)
		}
		if len(failed) == 0 && size <= 2*journalChunk {
			t.Errorf("the first create failed with the journal at %d bytes: it did not grow into the room the limit left past its last whole chunk", size)
		}
		failed = append(failed, a)
	}
	for _, a := range failed {
		if _, err := s.Account(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
			t.Errorf("the failed account %s is applied: %v", a.Name, err)
		}
	}
	// The log line of the failed write says the limit, as its error does:
	// it said only "file too large".
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "journal write failed") && !strings.Contains(l, fmt.Sprintf("file size limit of %d bytes", limit)) {
			t.Errorf("the failed write's log line does not say the limit:\n%s", l)
		}
	}
	want := dumpOf(t, s)
	s.Close()
	lift()

	s = reopenHolds(t, dir, want, made, "after a restart")
	if _, err := s.CreateAccount(ctx, failed[0]); err != nil {
		t.Errorf("create once the limit is lifted: %v", err)
	}
}

// TestCompactionPastFileSizeLimit: a compaction whose new snapshot is
// larger than the process's file size limit fails with EFBIG, and the
// store goes on with its journal. The log said only "file too large"; it
// says which file was being written, how large, the limit, and to raise
// it, and quotes no seed.
func TestCompactionPastFileSizeLimit(t *testing.T) {
	smallJournal(t, 16<<10)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	log, logs := newLog()
	s := open(t, dir, Options{Logger: log, CompactBytes: 8 << 10})
	var made []provision.Account
	// A state whose snapshot is past the limit set below.
	for i := 0; ; i++ {
		a := newAccount(t, fmt.Sprint("a", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		made = append(made, a)
		if fi, err := os.Stat(filepath.Join(dir, snapshotFile)); err != nil {
			t.Fatal(err)
		} else if fi.Size() > 48<<10 {
			break
		}
	}
	const limit = 40 << 10
	limitFileSize(t, limit)
	for i := 0; !strings.Contains(logs.String(), "compaction failed"); i++ {
		if i == 100 {
			t.Fatalf("no compaction failed past the file size limit; log:\n%s", logs.String())
		}
		a := newAccount(t, fmt.Sprint("b", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		made = append(made, a)
	}
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "compaction failed") {
			line = l
			break
		}
	}
	for _, want := range []string{snapshotFile, "file size limit", fmt.Sprint(limit), "ulimit -f", "raise"} {
		if !strings.Contains(line, want) {
			t.Errorf("the compaction's log line does not say %q:\n%s", want, line)
		}
	}
	for _, a := range made {
		if strings.Contains(logs.String(), string(a.IdentitySeed)) || strings.Contains(logs.String(), string(a.SigningKeys[0].Seed)) {
			t.Fatalf("the log quotes a seed:\n%s", logs.String())
		}
	}
}

// TestFileSizeLimitBelowJournalChunk: under a file size limit below the
// journal's chunk (4 MiB), a new store opens, takes changes, and, each time
// its journal reaches the limit (a 507), goes on with a new generation,
// and after a restart holds every acknowledged change. A new journal was
// written a whole chunk at once, where the journal's growth falls back to
// what fits: Open failed with "file too large" on an empty directory, and
// the new generation after a 507 could not be made either, which broke
// the store (503 until a restart).
func TestFileSizeLimitBelowJournalChunk(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	// Not a power of two times a page: no halving of the chunk fits
	// them.
	const limit, lower = 100 << 10, 84 << 10
	set, lift := limitFileSize(t, limit)

	s := open(t, dir, Options{})
	var made []provision.Account
	for i := range 3 {
		a := newAccount(t, fmt.Sprint("a", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatalf("create %s under the limit: %v", a.Name, err)
		}
		made = append(made, a)
	}
	// Lowered while the store runs (prlimit does it to a running
	// process), so that the journal meets it: the store reads the limit
	// at most once, when it opens.
	set(lower)
	// Updates grow the journal, not the state: each new snapshot fits.
	a := made[0]
	rev, err := s.Account(ctx, a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cur := rev.Revision
	full, after := 0, 0
	for i := 0; full < 3 || after < 3; i++ {
		if i == 2000 {
			t.Fatalf("%d updates, %d failed with 507: the journal did not reach the limit", i, full)
		}
		r, err := s.UpdateAccount(ctx, a, cur)
		if err != nil {
			if errors.Is(err, provision.ErrBroken) {
				t.Fatalf("update %d: the store broke under the limit: %v", i, err)
			}
			if !errors.Is(err, provision.ErrFull) || !errors.Is(err, provision.ErrFileSizeLimit) {
				t.Fatalf("update %d under the limit: %v, want ErrFull and ErrFileSizeLimit", i, err)
			}
			full++
			after = 0
			continue
		}
		cur = r
		if full > 0 {
			after++
		}
	}
	if err := s.Broken(); err != nil {
		t.Fatalf("the store broke under the limit: %v", err)
	}
	want := dumpOf(t, s)
	closeStore(t, s)
	lift()
	s = reopenHolds(t, dir, want, made, "after a restart")
	if got, err := s.Account(ctx, a.PublicKey); err != nil || got.Revision != cur {
		t.Errorf("after a restart the account is at %d (%v), want the last acknowledged update's %d", got.Revision, err, cur)
	}
}

// TestCompactionBeforeFileSizeLimit: under a file size limit below
// CompactBytes (64 MiB by default), the journal is compacted before a
// batch would take it past the limit, so that no change fails while a new
// snapshot fits; every acknowledged change is there after a restart. The
// journal reached the limit first: each time, a change failed with a 507,
// and only then did the recovery compact it.
func TestCompactionBeforeFileSizeLimit(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	const limit = 100 << 10
	_, lift := limitFileSize(t, limit)

	log, logs := newLog()
	s := open(t, dir, Options{Logger: log})
	var made []provision.Account
	for i := range 3 {
		a := newAccount(t, fmt.Sprint("a", i))
		if _, err := s.CreateAccount(ctx, a); err != nil {
			t.Fatalf("create %s under the limit: %v", a.Name, err)
		}
		made = append(made, a)
	}
	// Updates grow the journal, not the state: each new snapshot fits.
	// Some from several callers at once, so that batches hold more than
	// one record.
	a := made[0]
	got, err := s.Account(ctx, a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cur := got.Revision
	var written int
	for i := 0; written < 4*limit; i++ {
		r, err := s.UpdateAccount(ctx, a, cur)
		if err != nil {
			t.Fatalf("update %d, %d bytes of records in: %v", i, written, err)
		}
		cur = r
		written += len(a.JWT)
		if i%10 == 0 {
			errs := make(chan error, len(made)-1)
			for _, b := range made[1:] {
				go func() {
					got, err := s.Account(ctx, b.PublicKey)
					if err == nil {
						_, err = s.UpdateAccount(ctx, b, got.Revision)
					}
					errs <- err
				}()
			}
			for range made[1:] {
				if err := <-errs; err != nil {
					t.Fatalf("update %d, %d bytes of records in: %v", i, written, err)
				}
			}
		}
	}
	if n := strings.Count(logs.String(), "filestore compacted the journal"); n < 3 {
		t.Errorf("%d compactions under the limit, want 3 or more:\n%s", n, logs.String())
	}
	want := dumpOf(t, s)
	closeStore(t, s)
	lift()
	s = reopenHolds(t, dir, want, made, "after a restart")
	if got, err := s.Account(ctx, a.PublicKey); err != nil || got.Revision != cur {
		t.Errorf("after a restart the account is at %d (%v), want the last acknowledged update's %d", got.Revision, err, cur)
	}
}

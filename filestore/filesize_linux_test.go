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
	chunk := journalChunk
	journalChunk = 16 << 10
	t.Cleanup(func() { journalChunk = chunk })
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
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	// Not a multiple of the chunk: the journal's last growth is a part of one.
	limit := syscall.Rlimit{Cur: 40 << 10, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Skipf("cannot set RLIMIT_FSIZE: %v", err)
	}
	lifted := false
	lift := func() {
		if !lifted {
			lifted = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Fatalf("restore RLIMIT_FSIZE: %v", err)
			}
		}
	}
	defer lift()

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
		if strings.Contains(l, "journal write failed") && !strings.Contains(l, fmt.Sprintf("file size limit of %d bytes", limit.Cur)) {
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
	chunk := journalChunk
	journalChunk = 16 << 10
	t.Cleanup(func() { journalChunk = chunk })
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
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	const limit = 40 << 10
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		t.Skipf("cannot set RLIMIT_FSIZE: %v", err)
	}
	defer func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatalf("restore RLIMIT_FSIZE: %v", err)
		}
	}()
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

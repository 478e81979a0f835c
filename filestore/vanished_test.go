package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestStateFilesVanished: a directory without snapshot and journal opens as
// a new, empty store only when nothing shows it held one. When its lock
// file, an upgrade's kept files or a generation never put in place show
// that it did (the files lost to a wrong volume, a mistake, a partial
// restore), Open refuses with ErrDamaged naming what is missing and how to
// start anew, changes nothing, and Check reports it. A first Open cut
// short, which acknowledged nothing, opens empty.
func TestStateFilesVanished(t *testing.T) {
	hook := installStepHook(t)
	fault := installSyncFault(t)
	gone := func(t *testing.T, dir string, names ...string) {
		t.Helper()
		for _, n := range names {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// firstOpenCut stops the first Open of dir at step, and leaves the
	// lock file as a crash there would.
	firstOpenCut := func(step string) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			hook.set(step)
			defer hook.set("")
			if _, err := Open(dir, Options{}); !errors.Is(err, errCrash) {
				t.Fatalf("Open: %v, want the simulated crash", err)
			}
			writeFile(t, filepath.Join(dir, lockFile), []byte("999999999\n"))
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // nil: the directory does not exist
		named []string                       // in the refusal; nil: opens empty
	}{
		{"directory does not exist", nil, nil},
		{"empty directory", func(t *testing.T, dir string) {}, nil},
		{"directory with files not of a store", func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, "lost+found"), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "README"), []byte("store\n"))
		}, nil},
		{"first Open cut short after writing its snapshot", firstOpenCut(stepSnapshotWritten), nil},
		{"first Open cut short after writing its journal", firstOpenCut(stepJournalWritten), nil},
		{"first Open failed to flush", func(t *testing.T, dir string) {
			fault.mu.Lock()
			fault.failing = true
			fault.mu.Unlock()
			defer fault.disarm()
			if _, err := Open(dir, Options{}); !errors.Is(err, errInjected) {
				t.Fatalf("Open: %v, want the injected flush failure", err)
			}
			// The failed Open took its lock file with it.
			if files := storeFiles(t, dir); slices.Contains(files, lockFile) {
				t.Fatalf("files after a failed first Open: %v", files)
			}
		}, nil},
		{"snapshot and journal removed", func(t *testing.T, dir string) {
			smallStore(t, dir)
			gone(t, dir, snapshotFile, journalFile)
		}, []string{"its lock file"}},
		{"snapshot and journal removed beside a compaction's new generation", func(t *testing.T, dir string) {
			smallStore(t, dir) // the journal holds records: Open compacts
			hook.set(stepJournalWritten)
			defer hook.set("")
			if _, err := Open(dir, Options{}); !errors.Is(err, errCrash) {
				t.Fatalf("Open: %v, want the simulated crash", err)
			}
			gone(t, dir, snapshotFile, journalFile)
		}, []string{"its lock file", snapshotFile + newSuffix, journalFile + newSuffix}},
		{"an upgraded store's files and lock file removed", func(t *testing.T, dir string) {
			for _, n := range []string{v1SnapshotFile, v1JournalFile} {
				writeFile(t, filepath.Join(dir, n), readFile(t, filepath.Join("testdata", "v1store", n)))
			}
			closeStore(t, open(t, dir, Options{}))
			gone(t, dir, snapshotFile, journalFile, lockFile)
		}, []string{v1SnapshotFile + v1BackupSuffix, v1JournalFile + v1BackupSuffix}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			if tt.setup != nil {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				tt.setup(t, dir)
			}
			var before []string
			if tt.setup != nil {
				before = storeFiles(t, dir)
			}
			rep, err := Check(dir, nil)
			if tt.setup == nil {
				if err == nil {
					t.Errorf("Check of a directory that does not exist: no error")
				}
			} else if err != nil {
				t.Fatalf("Check: %v", err)
			} else if rep.Damaged() != (tt.named != nil) {
				t.Errorf("Check reports damage %v, want damaged %v", rep.Damage, tt.named != nil)
			}

			s, err := Open(dir, Options{})
			if tt.named == nil {
				if err != nil {
					t.Fatalf("Open: %v, want a new, empty store", err)
				}
				if d := dumpOf(t, s); len(d.Accounts) != 0 {
					t.Errorf("the new store holds %d accounts", len(d.Accounts))
				}
				closeStore(t, s)
				files := storeFiles(t, dir)
				for _, n := range []string{snapshotFile, journalFile, lockFile} {
					if !slices.Contains(files, n) {
						t.Errorf("files of the new store: %v, no %s", files, n)
					}
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open started an empty store in a directory whose store's files are gone")
			}
			var d *Damage
			if !errors.Is(err, ErrDamaged) || !errors.As(err, &d) || d.File != filepath.Join(dir, snapshotFile) {
				t.Fatalf("Open: %v, want ErrDamaged naming %s", err, snapshotFile)
			}
			for _, want := range append([]string{snapshotFile + " and " + journalFile + " are missing", "move everything out of " + dir}, tt.named...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open: %v\nsays nothing of %q", err, want)
				}
			}
			if after := storeFiles(t, dir); !slices.Equal(after, before) {
				t.Errorf("the refused Open changed the directory: %v, was %v", after, before)
			}
		})
	}
}

// TestFirstOpenKilled: a first Open killed anywhere between making its
// lock file and returning the store leaves a directory that the next Open
// opens as an empty store, and Check finds no damage there. Once that Open
// has returned, the lock file shows that the directory holds a store: its
// state files gone, Open refuses it.
func TestFirstOpenKilled(t *testing.T) {
	tests := []struct {
		name string
		step string
		// then adds what the kill left that no step shows: a file made
		// and not yet written.
		then func(t *testing.T, dir string)
	}{
		{"lock file made, not yet written", stepLocked, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, lockFile), nil)
		}},
		{"lock file written", stepLocked, nil},
		{"snapshot made, not yet written", stepLocked, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, snapshotFile+newSuffix), nil)
		}},
		{"snapshot written", stepSnapshotWritten, nil},
		{"journal written", stepJournalWritten, nil},
		{"snapshot placed", stepSnapshotPlaced, nil},
		{"journal placed", stepJournalPlaced, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			openKilledAt(t, dir, tt.step)
			if tt.then != nil {
				tt.then(t, dir)
			}
			t.Logf("files after the kill: %v", storeFiles(t, dir))
			if rep, err := Check(dir, nil); err != nil || rep.Damaged() {
				t.Fatalf("Check: %v %+v", err, rep.Damage)
			}
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatalf("Open after the kill: %v, want a new, empty store", err)
			}
			if d := dumpOf(t, s); len(d.Accounts) != 0 {
				t.Errorf("the new store holds %d accounts", len(d.Accounts))
			}
			closeStore(t, s)
			if got := storeFiles(t, dir); !slices.Equal(got, []string{journalFile, lockFile, snapshotFile}) {
				t.Errorf("files of the new store: %v", got)
			}
			for _, n := range []string{snapshotFile, journalFile} {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
			if s, err := Open(dir, Options{}); !errors.Is(err, ErrDamaged) {
				if err == nil {
					s.Close()
				}
				t.Fatalf("Open of the store with its state files gone: %v, want ErrDamaged", err)
			}
		})
	}
}

// openKilledAt stops an Open of dir at step and puts back the lock file as
// it was there: a failed Open removes a lock file it marked, a killed one
// does not.
func openKilledAt(t *testing.T, dir, step string) {
	t.Helper()
	var lock []byte
	orig := stepHook
	stepHook = func(s string) error {
		if s != step {
			return nil
		}
		lock = readFile(t, filepath.Join(dir, lockFile))
		return fmt.Errorf("%w at %s", errCrash, s)
	}
	_, err := Open(dir, Options{})
	stepHook = orig
	if !errors.Is(err, errCrash) {
		t.Fatalf("Open: %v, want the simulated crash", err)
	}
	writeFile(t, filepath.Join(dir, lockFile), lock)
}

// TestOpenOfAStoreWithoutItsLockFileKilled: a store copied or restored
// without its lock file gets a marked one from the next Open; that Open
// killed before it took the mark off leaves the store as it was, and the
// Open after it keeps every account and leaves the lock file a sign of
// the store: its state files gone, Open refuses it.
func TestOpenOfAStoreWithoutItsLockFileKilled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s := open(t, dir, Options{})
	a := newAccount(t, "kept")
	if _, err := s.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	if err := os.Remove(filepath.Join(dir, lockFile)); err != nil {
		t.Fatal(err)
	}
	openKilledAt(t, dir, stepLocked)
	if state, err := readLock(dir); err != nil || state != lockNew {
		t.Fatalf("the lock file after the killed Open: %v %v, want it marked new", state, err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the kill: %v", err)
	}
	if got, err := s.Account(context.Background(), a.PublicKey); err != nil || got.Name != a.Name {
		t.Errorf("the account after the killed Open: %+v %v", got, err)
	}
	closeStore(t, s)
	if state, err := readLock(dir); err != nil || state != lockHeld {
		t.Fatalf("the lock file after the Open: %v %v, want it held (a sign of the store)", state, err)
	}
	for _, n := range []string{snapshotFile, journalFile} {
		if err := os.Remove(filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := Open(dir, Options{}); !errors.Is(err, ErrDamaged) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open of the store with its state files gone: %v, want ErrDamaged", err)
	}
}

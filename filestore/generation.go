package filestore

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// A generation is a snapshot and the journal that goes with it. A new one
// is written, and put in place of the old, in steps that leave a store a
// crash at any point can open:
//
//  1. snapshot.v2.new is written and flushed;
//  2. journal.v2.new, empty, naming the new snapshot, is written and
//     flushed;
//  3. the snapshot is renamed into place and the directory flushed: from
//     here the new generation is in force, and a start that finds the new
//     snapshot beside the old journal takes journal.v2.new as its journal;
//  4. the journal is renamed into place and the directory flushed.
//
// A crash before step 3 leaves the old generation whole, and ".new" files
// that the next start removes.
const (
	stepSnapshotWritten = "snapshot-written"
	stepJournalWritten  = "journal-written"
	stepSnapshotPlaced  = "snapshot-placed"
	stepJournalPlaced   = "journal-placed"
	stepV1Renamed       = "v1-renamed"
	// stepLocked: Open has taken the lock, and written its lock file,
	// before it reads the directory.
	stepLocked = "locked"
)

// stepHook runs after each step of writing a generation. A test makes it
// return an error to stop there, as a crash would: nothing is cleaned up.
var stepHook = func(step string) error { return nil }

// encodeSnapshot renders the state as a snapshot with the given ID.
// Callers hold the store's lock for reading, or own the state.
func encodeSnapshot(st *state, id uint64, fromV1 map[string]string) ([]byte, error) {
	var out []byte
	n := uint64(0)
	add := func(l snapshotLine) error {
		body, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("filestore: encode snapshot: %w", err)
		}
		out = appendFrame(out, n, body)
		n++
		return nil
	}
	if err := add(snapshotLine{Header: &snapshotHeader{Format: formatName, Version: formatVersion, ID: formatID(id), Seq: st.seq, FromV1: fromV1}}); err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(st.accounts))
	for k := range st.accounts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	users := 0
	for _, k := range keys {
		e := st.accounts[k]
		if err := add(snapshotLine{Account: &e.disk, Rev: e.a.Revision}); err != nil {
			return nil, err
		}
		for _, r := range e.users {
			if err := add(snapshotLine{User: &r.u, Seq: r.seq}); err != nil {
				return nil, err
			}
			users++
		}
	}
	if err := add(snapshotLine{End: &snapshotEnd{Accounts: len(keys), Users: users}}); err != nil {
		return nil, err
	}
	return out, nil
}

// writeGeneration writes a snapshot and a new, empty journal for it into
// dir and puts them in place. placed reports that the new snapshot is in
// place, so that the old journal no longer counts, even when err says a
// later step failed. On success the new journal is returned open.
func writeGeneration(dir string, snap []byte, id, seq uint64) (j *journal, placed bool, err error) {
	snapPath := filepath.Join(dir, snapshotFile)
	jPath := filepath.Join(dir, journalFile)
	// A write that fails takes back what it wrote of the new generation:
	// on a full disk that holds the room the old journal needs to grow.
	if err := writeFileSynced(snapPath+newSuffix, snap); err != nil {
		os.Remove(snapPath + newSuffix)
		// Its size: past a file size limit, how far to raise it.
		return nil, false, fmt.Errorf("filestore: write snapshot (%d bytes): %w", len(snap), err)
	}
	if err := stepHook(stepSnapshotWritten); err != nil {
		return nil, false, err
	}
	if j, err = createJournal(jPath+newSuffix, id, seq); err != nil {
		os.Remove(jPath + newSuffix)
		os.Remove(snapPath + newSuffix)
		return nil, false, fmt.Errorf("filestore: create journal: %w", err)
	}
	defer func() {
		if err != nil {
			j.close()
			j = nil
		}
	}()
	if err := stepHook(stepJournalWritten); err != nil {
		return nil, false, err
	}
	if err := os.Rename(snapPath+newSuffix, snapPath); err != nil {
		return nil, false, fmt.Errorf("filestore: put snapshot in place: %w", err)
	}
	if err := syncDir(dir); err != nil {
		// The rename may or may not last: neither generation can be
		// counted on until a restart reads what is there.
		return nil, true, fmt.Errorf("filestore: flush store directory: %w", err)
	}
	if err := stepHook(stepSnapshotPlaced); err != nil {
		return nil, true, err
	}
	if err := os.Rename(jPath+newSuffix, jPath); err != nil {
		return nil, true, fmt.Errorf("filestore: put journal in place: %w", err)
	}
	j.path = jPath
	// The file keeps the name it was opened with, and its errors show
	// it: an operator told of a failed write to journal.v2.new looks for
	// a leftover. Opened by its own name, a failure names the journal.
	if f, err := os.OpenFile(jPath, os.O_RDWR, 0); err == nil {
		j.f.Close()
		j.f = f
	}
	if err := stepHook(stepJournalPlaced); err != nil {
		return nil, true, err
	}
	// If this flush fails, the journal's rename may be lost; either name
	// is read as this generation's journal, so the store goes on.
	_ = syncDir(dir)
	return j, true, nil
}

// writeFileSynced writes a new file with mode 0600 and flushes it.
func writeFileSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := syncFile(f, false); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return syncFile(d, false)
}

// backupName returns a name for a previous-version file that is not taken:
// name.v1, or name.v1.2 and on when an older backup is there.
func backupName(dir, name string) string {
	base := name + v1BackupSuffix
	for i := 2; ; i++ {
		if _, err := os.Lstat(filepath.Join(dir, base)); os.IsNotExist(err) {
			return base
		}
		base = fmt.Sprintf("%s%s.%d", name, v1BackupSuffix, i)
	}
}

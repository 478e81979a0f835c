package filestore

import (
	"errors"
	"fmt"
	"os"
)

// journalChunk is how much zeroed space the journal is extended by.
// Records overwrite zeros in place, so the file's size and block map do not
// change on a commit, and fdatasync flushes only data: on ext4 that halves
// the cost of a commit. A variable so that tests can use small files.
var journalChunk int64 = 4 << 20

// syncFile flushes a file: only its data (fdatasync) when dataOnly, else
// data and metadata. Every flush of the store goes through it, so that an
// internal test can make one fail.
var syncFile = func(f *os.File, dataOnly bool) error {
	if dataOnly {
		return datasync(f)
	}
	return f.Sync()
}

// journal is the open journal file. Only the committer uses it, and Open
// before the committer starts.
type journal struct {
	f     *os.File
	path  string
	hdr   slot  // the current header slot
	alloc int64 // size of the file: zeroed space ends here
	// failed is set once a write or flush of this journal failed: nothing
	// more goes into it, and what the failure left behind is not read.
	failed bool
}

// errJournalFailed: the journal had a failed write and takes no more.
var errJournalFailed = errors.New("filestore: journal had a failed write")

// append writes buf, the records up to sequence last, after the committed
// records, makes it durable, then records the new committed length in the
// other header slot and makes that durable. Data first, then header: a
// crash between the two leaves valid records past the committed length,
// which were never acknowledged and may be kept.
func (j *journal) append(buf []byte, last uint64) error {
	if j.failed {
		return errJournalFailed
	}
	if err := j.write(buf, last); err != nil {
		j.failed = true
		return err
	}
	return nil
}

func (j *journal) write(buf []byte, last uint64) error {
	end := j.hdr.end + int64(len(buf))
	for end > j.alloc {
		// Growing the file changes its size: a full flush, once a chunk.
		if _, err := j.f.WriteAt(make([]byte, journalChunk), j.alloc); err != nil {
			return err
		}
		if err := syncFile(j.f, false); err != nil {
			return err
		}
		j.alloc += journalChunk
	}
	if _, err := j.f.WriteAt(buf, j.hdr.end); err != nil {
		return err
	}
	if err := syncFile(j.f, true); err != nil {
		return err
	}
	next := j.hdr
	next.gen++
	next.seq = last
	next.end = end
	if err := j.writeSlot(next); err != nil {
		return err
	}
	j.hdr = next
	return nil
}

func (j *journal) writeSlot(s slot) error {
	if _, err := j.f.WriteAt(s.encode(), slotOffset(s.gen)); err != nil {
		return err
	}
	return syncFile(j.f, true)
}

// close marks, after a failed write, that nothing past the committed
// length is to be read, so that a record whose caller was told it failed
// does not come back at the next start. It is the last write to the
// journal; it may fail too, on the disk that failed the write.
func (j *journal) markClosed() error {
	next := j.hdr
	next.gen++
	next.closed = true
	if err := j.writeSlot(next); err != nil {
		return err
	}
	j.hdr = next
	return nil
}

func (j *journal) close() error {
	if j == nil || j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// createJournal writes a new, empty journal for snapshot snap at sequence
// base to path, zero-filled, its header in slot 1, and flushes it.
func createJournal(path string, snap, base uint64) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	j := &journal{f: f, path: path, alloc: journalChunk, hdr: slot{gen: 1, snap: snap, base: base, seq: base, end: dataStart}}
	fail := func(err error) (*journal, error) {
		f.Close()
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if j.alloc < dataStart+journalSlotSize {
		j.alloc = dataStart + journalSlotSize
	}
	if _, err := f.WriteAt(make([]byte, j.alloc), 0); err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(j.hdr.encode(), slotOffset(j.hdr.gen)); err != nil {
		return fail(err)
	}
	if err := syncFile(f, false); err != nil {
		return fail(err)
	}
	return j, nil
}

// openJournal opens an existing journal to go on appending after the
// committed records, whose header the loader chose.
func openJournal(path string, hdr slot, size int64) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("filestore: open journal: %w", err)
	}
	return &journal{f: f, path: path, hdr: hdr, alloc: size}, nil
}

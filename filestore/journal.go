package filestore

import (
	"errors"
	"fmt"
	"os"
)

// journalChunk is how much zeroed space the journal is extended by, and a
// new journal starts with (less, on a disk without room for it or past the
// process's file size limit: what the records written need, and for a new
// journal as much as fits, halving down to a page of records).
// Records overwrite zeros in place, so the file's size and block map do not
// change on a commit, and fdatasync flushes only data: on ext4 that halves
// the cost of a commit. A variable so that tests can use small files.
var journalChunk int64 = 4 << 20

// minJournal is the smallest new journal: its header slots and a page of
// records.
const minJournal = dataStart + journalSlotSize

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
	f    *os.File
	path string
	hdr  slot  // the header last flushed: what is committed
	next *slot // a header written, current once the next flush is done
	end  int64 // where the next record goes
	// alloc is the size of the file: zeroed space ends here.
	alloc int64
	// failed is set once a write or flush of this journal failed: nothing
	// more goes into it, and what the failure left behind is not read.
	failed bool
}

// errJournalFailed: the journal had a failed write and takes no more.
var errJournalFailed = errors.New("filestore: journal had a failed write")

// writeRecords writes buf after the records written so far, extending the
// zeroed space when needed. Nothing is flushed but a growth of the file.
func (j *journal) writeRecords(buf []byte) error {
	if j.failed {
		return errJournalFailed
	}
	grow := journalChunk
	for j.end+int64(len(buf)) > j.alloc {
		// Growing the file changes its size: a full flush, once a chunk.
		if _, err := j.f.WriteAt(make([]byte, grow), j.alloc); err != nil {
			// A disk without room for a chunk may have room for these
			// records: the journal grows by what they need instead.
			// Failed here, a store with megabytes free broke (its new
			// snapshot comes with a chunk of journal too, and the
			// partial write had taken what room there was), and did
			// not start again until room was made.
			need := (j.end + int64(len(buf)) - j.alloc + 4095) &^ 4095
			if isNoRoom(err) && need < grow && j.f.Truncate(j.alloc) == nil {
				grow = need
				continue
			}
			j.failed = true
			return err
		}
		if err := syncFile(j.f, false); err != nil {
			j.failed = true
			return err
		}
		j.alloc += grow
	}
	if _, err := j.f.WriteAt(buf, j.end); err != nil {
		j.failed = true
		return err
	}
	j.end += int64(len(buf))
	return nil
}

// writeHeader writes, into the other slot, a header that commits the
// records up to offset end, sequence seq. Those records must be flushed
// already; the header counts once the next flush is done. Data first,
// then header: a crash between leaves valid records past the committed
// length, which a start keeps: the committer answers a batch once its
// records are flushed, before its header is.
func (j *journal) writeHeader(end int64, seq uint64) error {
	if j.failed {
		return errJournalFailed
	}
	next := j.hdr
	next.gen++
	next.end, next.seq = end, seq
	if _, err := j.f.WriteAt(next.encode(), slotOffset(next.gen)); err != nil {
		j.failed = true
		return err
	}
	j.next = &next
	return nil
}

// flush makes what was written durable (fdatasync: the file's size does
// not change), and a header written before it current.
func (j *journal) flush() error {
	if j.failed {
		return errJournalFailed
	}
	if err := syncFile(j.f, true); err != nil {
		j.failed = true
		return err
	}
	if j.next != nil {
		j.hdr, j.next = *j.next, nil
	}
	return nil
}

// markClosed records, after a failed write, that nothing past end (the
// records answered so far, the last of sequence seq; the committed length
// when end is not beyond it) is to be read, so
// that a record whose caller was told it failed does not come back at the
// next start. It writes the slot a header not yet flushed went to, so that
// one no longer counts either. It is the last write to the journal; it may
// fail too, on the disk that failed the write.
func (j *journal) markClosed(end int64, seq uint64) error {
	next := j.hdr
	next.gen++
	next.closed = true
	if end > next.end {
		next.end, next.seq = end, seq
	}
	if _, err := j.f.WriteAt(next.encode(), slotOffset(next.gen)); err != nil {
		return err
	}
	if err := syncFile(j.f, true); err != nil {
		return err
	}
	j.hdr, j.next = next, nil
	return nil
}

// goOnAfter makes an opened journal go on after the records a start
// kept past its committed length (ending at end, the last of sequence
// seq), when no new generation could be written: what lies past them up
// to tail (a torn write) is zeroed, so that no part of it is read after
// the records that will be written there, and a header counting them is
// written. One flush: before it, the records kept are still past the old
// header and read as such. All of it is in space the file has.
func (j *journal) goOnAfter(end int64, seq uint64, tail int64) error {
	if tail > end {
		if _, err := j.f.WriteAt(make([]byte, tail-end), end); err != nil {
			j.failed = true
			return err
		}
	}
	if err := j.writeHeader(end, seq); err != nil {
		return err
	}
	if err := j.flush(); err != nil {
		return err
	}
	j.end = end
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
	j := &journal{f: f, path: path, alloc: max(journalChunk, minJournal), end: dataStart, hdr: slot{gen: 1, snap: snap, base: base, seq: base, end: dataStart}}
	fail := func(err error) (*journal, error) {
		f.Close()
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	for {
		_, err := f.WriteAt(make([]byte, j.alloc), 0)
		if err == nil {
			break
		}
		// A disk without room for a chunk, or a file size limit below
		// it, may have room for less: the journal starts smaller (down
		// to a page of records) and grows as writeRecords grows it.
		// Failed here, a store under a limit below the chunk could not
		// be created, nor a new generation made after a write that met
		// the limit, which broke the store.
		smaller := max(j.alloc/2&^4095, minJournal)
		if !isNoRoom(err) || smaller >= j.alloc || f.Truncate(0) != nil {
			// Its size: past a file size limit, how far to raise it.
			return fail(fmt.Errorf("zero-fill %d bytes: %w", j.alloc, err))
		}
		j.alloc = smaller
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
	return &journal{f: f, path: path, hdr: hdr, end: hdr.end, alloc: size}, nil
}

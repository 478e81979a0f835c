package keystore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	journalFile  = "journal"
	snapshotFile = "snapshot.json"

	opPut    = "put"
	opDelete = "delete"
	opUser   = "user"

	// maxBatch bounds how many records share one fsync, so that one slow
	// disk write cannot hold an unbounded number of callers.
	maxBatch = 256
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// record is one journal line: a change to the state.
type record struct {
	Op        string   `json:"op"`
	PublicKey string   `json:"public_key,omitempty"`
	Account   *Account `json:"account,omitempty"`
	User      *User    `json:"user,omitempty"`
}

// encodeRecord renders a record as "crc32c-hex json\n". The checksum tells a
// line torn by a crash from a whole one.
func encodeRecord(r record) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(body)+10)
	line = hex.AppendEncode(line, binary.BigEndian.AppendUint32(nil, crc32.Checksum(body, crcTable)))
	line = append(line, ' ')
	line = append(line, body...)
	return append(line, '\n'), nil
}

func decodeRecord(line []byte) (record, error) {
	var r record
	sum, body, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(sum) != 8 {
		return r, errors.New("malformed line")
	}
	want, err := hex.DecodeString(string(sum))
	if err != nil || !bytes.Equal(want, binary.BigEndian.AppendUint32(nil, crc32.Checksum(body, crcTable))) {
		return r, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, err
	}
	switch {
	case r.Op == opPut && r.Account != nil,
		r.Op == opDelete && r.PublicKey != "",
		r.Op == opUser && r.User != nil && r.PublicKey != "":
		return r, nil
	}
	return r, fmt.Errorf("incomplete %q record", r.Op)
}

// snapshot is the on-disk form of the whole state.
type snapshot struct {
	Version  int               `json:"version"`
	Accounts []snapshotAccount `json:"accounts"`
}

type snapshotAccount struct {
	Account
	Users []User `json:"users,omitempty"`
}

func (s *DirStore) loadSnapshot() error {
	path := filepath.Join(s.dir, snapshotFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore: read snapshot: %w", err)
	}
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return fmt.Errorf("keystore: decode %s: %w", path, err)
	}
	if snap.Version != 1 {
		return fmt.Errorf("keystore: %s has version %d, this build reads version 1", path, snap.Version)
	}
	for _, sa := range snap.Accounts {
		e := newEntry(sa.Account)
		for _, u := range sa.Users {
			e.addUser(u)
		}
		s.accounts[sa.PublicKey] = e
		s.names[sa.Name] = sa.PublicKey
	}
	return nil
}

// replayJournal applies the journal on top of the snapshot and returns how
// many records it applied.
func (s *DirStore) replayJournal() (int, error) {
	path := filepath.Join(s.dir, journalFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("keystore: open journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	n := 0
	for lineNo := 1; ; lineNo++ {
		if b, err := r.Peek(1); err == nil && b[0] == 0 {
			// The zeroed space past the last record.
			return n, nil
		}
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				// A line without its newline was being written when the
				// process stopped; its caller never got an answer.
				s.log.Warn("keystore dropped a torn journal record", "line", lineNo)
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("keystore: read journal: %w", err)
		}
		rec, derr := decodeRecord(bytes.TrimSuffix(line, []byte{'\n'}))
		if derr != nil {
			if b, perr := r.Peek(1); errors.Is(perr, io.EOF) || (perr == nil && b[0] == 0) {
				s.log.Warn("keystore dropped a damaged last journal record", "line", lineNo, "error", derr)
				return n, nil
			}
			return n, fmt.Errorf("keystore: journal %s line %d: %w", path, lineNo, derr)
		}
		if err := s.apply(rec); err != nil && !errors.Is(err, ErrNotFound) {
			// A user record for an account deleted at the same moment was
			// refused at run time too; anything else is damage.
			return n, fmt.Errorf("keystore: journal %s line %d: %w", path, lineNo, err)
		}
		n++
	}
}

// writeSnapshot writes the whole state atomically. Callers hold s.mu, or
// are the only goroutine touching the store.
func (s *DirStore) writeSnapshot() error {
	snap := snapshot{Version: 1, Accounts: make([]snapshotAccount, 0, len(s.accounts))}
	for _, e := range s.accounts {
		snap.Accounts = append(snap.Accounts, snapshotAccount{Account: e.account, Users: e.users})
	}
	slices.SortFunc(snap.Accounts, func(a, b snapshotAccount) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	data, err := json.Marshal(snap)
	if err != nil {
		return fmt.Errorf("keystore: encode snapshot: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(s.dir, snapshotFile), data, 0o600); err != nil {
		return fmt.Errorf("keystore: write snapshot: %w", err)
	}
	return nil
}

// WriteFileAtomic writes data to path so that a reader, or a restart after a
// crash, sees either the old file or the new one whole: it writes a temp file
// in the same directory with the given mode, fsyncs it, renames it over path
// and fsyncs the directory.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// pending is one submitted record waiting for its write.
type pending struct {
	rec  record
	line []byte
	err  error
	done chan struct{}
}

// wait returns when the record is written and applied, or failed. It does
// not give up when the caller's context ends: a submitted record is written
// or not, and a caller told "failed" about a change that then lands would
// push nothing and undo nothing, leaving the store and the servers apart.
// A write takes one fsync; a disk that hangs it hangs everything anyway.
func (p *pending) wait() error {
	<-p.done
	return p.err
}

const (
	// journalChunk is how much zeroed space the journal is extended by.
	// Records overwrite zeros in place, so the file's size and block map
	// do not change on a write, and fdatasync flushes only the data: on
	// ext4 that halves the cost of a commit.
	journalChunk = 4 << 20
	// lazySyncDelay bounds how long a user record stays in memory only.
	lazySyncDelay = 20 * time.Millisecond
	// lazyMax is how many bytes of user records wait before they are
	// written without waiting for the delay.
	lazyMax = 1 << 20
)

// committer owns the journal file: it writes batches of records, fsyncs
// once per batch, applies the records to the in-memory state and wakes
// their callers.
type committer struct {
	s            *DirStore
	path         string
	j            *os.File
	off          int64 // where the next record goes
	alloc        int64 // zeroed size of the file
	compactBytes int64
	in           chan *pending
	kick         chan bool // lazy records are waiting; true: write them now
	stopped      chan struct{}
}

// newJournal replaces the journal with an empty, zero-filled one. The old
// one must already be folded into the snapshot.
func newJournal(path string) (*os.File, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: create journal: %w", err)
	}
	fail := func(err error) (*os.File, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("keystore: create journal: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.WriteAt(make([]byte, journalChunk), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	// Past the rename the new file is the journal: it is returned even if
	// the directory sync fails, so that nothing is written to the old one,
	// which no longer has a name.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return f, fmt.Errorf("keystore: sync store directory: %w", err)
	}
	return f, nil
}

func newCommitter(s *DirStore, path string, j *os.File, compactBytes int64) *committer {
	c := &committer{
		s:            s,
		path:         path,
		j:            j,
		alloc:        journalChunk,
		compactBytes: compactBytes,
		in:           make(chan *pending, maxBatch),
		kick:         make(chan bool, 1),
		stopped:      make(chan struct{}),
	}
	go c.run()
	return c
}

// submit queues a record. Callers must not hold s.mu: the committer takes it
// to apply a batch, and the queue may be full.
func (c *committer) submit(r record) *pending {
	p := &pending{rec: r, done: make(chan struct{})}
	p.line, p.err = encodeRecord(r)
	if p.err != nil {
		c.s.mu.Lock()
		c.s.abandon(r)
		c.s.mu.Unlock()
		close(p.done)
		return p
	}
	c.in <- p
	return p
}

func (c *committer) close() error {
	close(c.in)
	<-c.stopped
	return c.j.Close()
}

// nudge tells the committer that n bytes of user records wait. Callers
// hold s.mu.
func (c *committer) nudge(n int) {
	select {
	case c.kick <- n >= lazyMax:
	default:
	}
}

// takeLazy returns the user records waiting to be written. Callers hold
// s.mu.
func (c *committer) takeLazy() []byte {
	b := c.s.lazy
	c.s.lazy = nil
	return b
}

func (c *committer) run() {
	defer close(c.stopped)
	batch := make([]*pending, 0, maxBatch)
	var buf []byte
	lazy := time.NewTimer(time.Hour)
	lazy.Stop()
	armed := false
	for {
		var p *pending
		select {
		case q, ok := <-c.in:
			if !ok {
				c.writeLazy()
				return
			}
			p = q
		case now := <-c.kick:
			if now {
				c.writeLazy()
			} else if !armed {
				lazy.Reset(lazySyncDelay)
				armed = true
			}
			continue
		case <-lazy.C:
			armed = false
			c.writeLazy()
			continue
		}
		batch = append(batch[:0], p)
		buf = append(buf[:0], p.line...)
	fill:
		for len(batch) < maxBatch {
			select {
			case q, ok := <-c.in:
				if !ok {
					break fill
				}
				batch = append(batch, q)
				buf = append(buf, q.line...)
			default:
				break fill
			}
		}
		c.s.mu.Lock()
		// User records applied before these changes were submitted go
		// first, so that the journal replays in the order things happened.
		users := c.takeLazy()
		if len(users) > 0 {
			buf = append(users, buf...)
		}
		c.s.mu.Unlock()
		err := c.write(buf)
		c.s.mu.Lock()
		if err != nil && len(users) > 0 {
			// They are applied in memory already; keep them for the next
			// write. A copy: buf may share their memory, and buf is
			// refilled for the next batch.
			c.s.lazy = append(append([]byte(nil), users...), c.s.lazy...)
			c.nudge(len(c.s.lazy))
		}
		for _, q := range batch {
			if err != nil {
				q.err = fmt.Errorf("keystore: write journal: %w", err)
				c.s.abandon(q.rec)
			} else {
				q.err = c.s.apply(q.rec)
			}
		}
		if err == nil && c.off > c.compactBytes {
			c.compact()
		}
		c.s.mu.Unlock()
		for _, q := range batch {
			close(q.done)
		}
	}
}

// writeLazy writes and syncs the user records that wait.
func (c *committer) writeLazy() {
	c.s.mu.Lock()
	buf := c.takeLazy()
	c.s.mu.Unlock()
	if len(buf) == 0 {
		return
	}
	err := c.write(buf)
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if err != nil {
		// They are applied in memory; keep them for the next write.
		c.s.log.Error("keystore could not write user records; will retry", "error", err)
		c.s.lazy = append(buf, c.s.lazy...)
		c.nudge(len(c.s.lazy))
		return
	}
	// A load of user creates alone must compact too.
	if c.off > c.compactBytes {
		c.compact()
	}
}

// write puts buf at the end of the journal, extending the zeroed space when
// needed, and makes it durable. On a failed write the records are not
// counted: the next write goes over them.
func (c *committer) write(buf []byte) error {
	for c.off+int64(len(buf)) > c.alloc {
		// Growing the file changes its size: a full fsync, once a chunk.
		if _, err := c.j.WriteAt(make([]byte, journalChunk), c.alloc); err != nil {
			return err
		}
		if err := c.j.Sync(); err != nil {
			return err
		}
		c.alloc += journalChunk
	}
	if _, err := c.j.WriteAt(buf, c.off); err != nil {
		// Zero what may have landed, so that a restart does not read a
		// record whose caller was told it failed.
		c.j.WriteAt(make([]byte, len(buf)), c.off)
		return err
	}
	if err := datasync(c.j); err != nil {
		c.j.WriteAt(make([]byte, len(buf)), c.off)
		return err
	}
	c.off += int64(len(buf))
	return nil
}

// compact writes a snapshot of the state and starts an empty journal. It
// runs on the committer with s.mu held, so no record is in between.
func (c *committer) compact() {
	if err := c.s.writeSnapshot(); err != nil {
		c.s.log.Error("keystore compaction failed; the journal keeps growing", "error", err)
		return
	}
	j, err := newJournal(c.path)
	if j == nil {
		c.s.log.Error("keystore could not start a new journal after a snapshot", "error", err)
		return
	}
	if err != nil {
		c.s.log.Warn("keystore started a new journal, but the directory sync failed", "error", err)
	}
	c.s.log.Info("keystore compacted the journal", "bytes", c.off, "accounts", len(c.s.accounts))
	c.j.Close()
	c.j, c.off, c.alloc = j, 0, journalChunk
}

package keystore

import (
	"bufio"
	"bytes"
	"context"
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
			if _, perr := r.Peek(1); errors.Is(perr, io.EOF) {
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

// pending is one submitted record waiting for its fsync.
type pending struct {
	rec  record
	line []byte
	err  error
	done chan struct{}
}

// wait returns when the record is durable and applied, or failed. A caller
// whose context ends first gets the context's error, but the record may
// still be written: the store never leaves a record half-written, only
// written or not.
func (p *pending) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("keystore: waiting for the journal: %w", ctx.Err())
	}
}

// committer owns the journal file: it appends batches of records, fsyncs
// once per batch, applies the records to the in-memory state and wakes
// their callers.
type committer struct {
	s            *DirStore
	j            *os.File
	size         int64
	compactBytes int64
	in           chan *pending
	stopped      chan struct{}
}

func openJournal(path string, truncate bool) (*os.File, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: open journal: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: chmod journal: %w", err)
	}
	// The journal's directory entry must be durable before its first record
	// counts as durable.
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: sync journal: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: sync store directory: %w", err)
	}
	return f, nil
}

func newCommitter(s *DirStore, j *os.File, compactBytes int64) *committer {
	st, _ := j.Stat()
	c := &committer{
		s:            s,
		j:            j,
		compactBytes: compactBytes,
		in:           make(chan *pending, maxBatch),
		stopped:      make(chan struct{}),
	}
	if st != nil {
		c.size = st.Size()
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

func (c *committer) run() {
	defer close(c.stopped)
	batch := make([]*pending, 0, maxBatch)
	var buf []byte
	for p := range c.in {
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
		err := c.write(buf)
		c.s.mu.Lock()
		for _, q := range batch {
			if err != nil {
				q.err = fmt.Errorf("keystore: write journal: %w", err)
				c.s.abandon(q.rec)
			} else {
				q.err = c.s.apply(q.rec)
			}
		}
		if err == nil && c.size > c.compactBytes {
			c.compact()
		}
		c.s.mu.Unlock()
		for _, q := range batch {
			close(q.done)
		}
	}
}

// write appends buf and makes it durable. On a failed write it cuts the
// journal back, so that a later record is never appended after a torn one.
func (c *committer) write(buf []byte) error {
	n, err := c.j.Write(buf)
	if err == nil {
		err = c.j.Sync()
	}
	if err != nil {
		if terr := c.j.Truncate(c.size); terr != nil {
			c.s.log.Error("keystore could not cut back the journal after a failed write", "error", terr)
		}
		return err
	}
	c.size += int64(n)
	return nil
}

// compact writes a snapshot of the state and empties the journal. It runs
// on the committer with s.mu held, so no record is in between.
func (c *committer) compact() {
	if err := c.s.writeSnapshot(); err != nil {
		c.s.log.Error("keystore compaction failed; the journal keeps growing", "error", err)
		return
	}
	if err := c.j.Truncate(0); err != nil {
		c.s.log.Error("keystore could not empty the journal after a snapshot", "error", err)
		return
	}
	if err := c.j.Sync(); err != nil {
		c.s.log.Error("keystore could not sync the emptied journal", "error", err)
		return
	}
	c.s.log.Info("keystore compacted the journal", "bytes", c.size, "accounts", len(c.s.accounts))
	c.size = 0
}

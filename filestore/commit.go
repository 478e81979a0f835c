package filestore

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/natsprov/provisioner/provision"
)

const (
	// maxBatch bounds how many operations share one commit, so that one
	// slow disk write cannot hold an unbounded number of callers.
	maxBatch = 256
	// lazyDelay bounds how long a lazy user record stays in memory only.
	lazyDelay = 20 * time.Millisecond
	// lazyMax is how many bytes of user records wait before they are
	// written without waiting for the delay.
	lazyMax = 1 << 20
)

// op is one change submitted to the committer.
type op struct {
	kind    string
	account provision.Account // create, update
	held    held              // create, update: as it will be stored
	pub     string            // remove
	rev     uint64            // update, remove: the revision the caller read
	user    provision.User    // durable user record
	body    []byte            // the record's JSON

	seq  uint64 // given when the batch is built
	err  error
	done chan struct{}
}

// committer owns the journal: it checks each batch of operations against
// the state, writes them with the lazy user records that wait, flushes,
// then applies them and wakes their callers. A batch is done once its
// records are flushed: a start keeps the valid records past the committed
// length (load.go), so the header that counts them, flushed after them
// (with the next batch's records while more wait), is not waited for.
// Waiting for it made each change wait for two flushes in a row, which on
// ext4 under the servers' own writes were about a millisecond each.
// After a failed write it marks the journal closed past the last batch
// it answered, and starts a new generation before answering, so that the
// failed records are never read back.
type committer struct {
	s            *Store
	j            *journal
	compactBytes int64
	nextCompact  int64 // journal length at which to compact next
	in           chan *op
	kick         chan bool // lazy records wait; true: write them now
	stopped      chan struct{}
	view         batchView
	spare        []byte // a buffer for the next batch's records

	// sizeLimit is the process's file size limit (RLIMIT_FSIZE), read
	// when the store opened, 0 for none: a batch that would grow the
	// journal past it is written after a compaction, not failed with a
	// 507 (see early). noEarly is set while the last compaction failed,
	// so that each batch does not write a snapshot in vain.
	sizeLimit int64
	noEarly   bool
}

// batch is what one flush writes: the lazy user records that waited, then
// the operations that passed their checks.
type batch struct {
	ops   []*op
	buf   []byte   // framed records
	lazy  int      // bytes of lazy user records at the start of buf
	n     int      // operations accepted
	last  uint64   // sequence of the last record
	end   int64    // journal length past the batch, once written
	dead  []string // reservations, dropped when the batch is done
	users []string
}

func (b *batch) empty() bool { return len(b.buf) == 0 }

func newCommitter(s *Store, j *journal, compactBytes int64) *committer {
	c := &committer{
		s:            s,
		j:            j,
		compactBytes: compactBytes,
		nextCompact:  dataStart + compactBytes,
		in:           make(chan *op, maxBatch),
		kick:         make(chan bool, 1),
		stopped:      make(chan struct{}),
	}
	if limit, ok := fileSizeLimit(); ok && limit < 1<<62 {
		c.sizeLimit = int64(limit)
	}
	go c.run()
	return c
}

// nudge tells the committer that n bytes of user records wait. Callers
// hold s.mu.
func (c *committer) nudge(n int) {
	select {
	case c.kick <- n >= lazyMax:
	default:
	}
}

// close stops the committer once it has written what waits, and closes the
// journal.
func (c *committer) close() error {
	close(c.in)
	<-c.stopped
	var err error
	c.s.mu.RLock()
	if len(c.s.lazy) > 0 {
		err = fmt.Errorf("filestore: %d bytes of user records could not be written before close", len(c.s.lazy))
	}
	c.s.mu.RUnlock()
	if cerr := c.j.close(); err == nil {
		err = cerr
	}
	return err
}

func (c *committer) run() {
	defer close(c.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	var waiting *batch // records flushed and answered, header not yet
	for {
		ops := make([]*op, 0, 8)
		closing := false
		if waiting == nil {
			select {
			case o, ok := <-c.in:
				if ok {
					ops = append(ops, o)
				} else {
					closing = true
				}
			case now := <-c.kick:
				if !now {
					if !armed {
						timer.Reset(lazyDelay)
						armed = true
					}
					continue
				}
			case <-timer.C:
				armed = false
			}
		}
	fill:
		for !closing && len(ops) < maxBatch {
			select {
			case o, ok := <-c.in:
				if !ok {
					closing = true
					break fill
				}
				ops = append(ops, o)
			default:
				break fill
			}
		}
		b := c.build(ops, true)
		if b == nil {
			// Written now, the batch would take the journal past the
			// file size limit and fail with a 507 that a compaction
			// avoids: settle the waiting batch's header, compact, and
			// build the batch for the new journal. A header that
			// failed was recovered from (a new journal, or a broken
			// store): nothing is left to compact.
			c.step(waiting, &batch{}, false)
			waiting = nil
			if c.s.Broken() == nil && !c.j.failed && c.j.end > dataStart {
				c.compactLogged()
			}
			b = c.build(ops, false)
		}
		waiting = c.step(waiting, b, closing)
		if closing {
			return
		}
	}
}

// build checks the operations against the state (where every batch
// before has been applied), gives the accepted ones their sequence, and
// frames them after the lazy user records that wait, which were applied
// before these operations were checked: the journal replays in sequence
// order. With early, it returns nil, and takes nothing, when the batch
// would take the journal past the file size limit and a compaction would
// make room for it (see early).
func (c *committer) build(ops []*op, early bool) *batch {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &batch{ops: ops}
	if s.broken != nil {
		for _, o := range ops {
			o.err = s.broken
		}
		return b
	}
	if early && c.sizeLimit > 0 {
		// At most what the batch writes: some operations may fail their
		// checks. The lazy records are counted under the lock that
		// takes them, so that none comes between.
		n := int64(len(s.lazy))
		for _, o := range ops {
			n += frameHead + int64(len(o.body)) + 1
		}
		if c.early(n) {
			return nil
		}
	}
	b.buf, s.lazy, c.spare = s.lazy, c.spare[:0], nil
	b.lazy = len(b.buf)
	c.view.reset(s.st)
	for _, o := range ops {
		if o.err = c.view.check(o, s.st.seq+1); o.err != nil {
			continue
		}
		s.st.seq++
		o.seq = s.st.seq
		b.buf = appendFrame(b.buf, o.seq, o.body)
		b.n++
		// Reserve what a lazy user record checked meanwhile must see.
		var dead, user string
		switch {
		case o.kind == opUpdate && !o.account.Live():
			dead = o.account.PublicKey
		case o.kind == opRemove:
			dead = o.pub
		case o.kind == opUser:
			user = o.user.PublicKey
		}
		if dead != "" {
			s.pendDead[dead]++
			b.dead = append(b.dead, dead)
		}
		if user != "" {
			s.pendUsers[user]++
			b.users = append(b.users, user)
		}
	}
	b.last = s.st.seq
	return b
}

// step writes batch b after the waiting one: the waiting batch's header
// and b's records go to disk with one flush, and b is done. Unless more
// operations are queued (and the journal need not be compacted, and this
// is not the last step), b's header is then flushed at once. It returns
// the batch whose header is still to be written.
func (c *committer) step(waiting, b *batch, final bool) *batch {
	if b.empty() && waiting == nil {
		c.answer(b)
		return nil
	}
	var err error
	if waiting != nil {
		err = c.j.writeHeader(waiting.end, waiting.last)
	}
	if err == nil && !b.empty() {
		err = c.j.writeRecords(b.buf)
		b.end = c.j.end
	}
	if err == nil {
		err = c.j.flush()
	}
	c.spare = b.buf[:0]
	if err != nil {
		c.fail(err, waiting, b)
		return nil
	}
	if b.empty() {
		c.answer(b)
		return nil
	}
	c.finish(b)
	if !final && len(c.in) > 0 && c.j.end < c.nextCompact {
		return b
	}
	err = c.j.writeHeader(b.end, b.last)
	if err == nil {
		err = c.j.flush()
	}
	if err != nil {
		c.fail(err, b, nil)
		return nil
	}
	if c.j.hdr.end >= c.nextCompact {
		c.compactLogged()
	}
	return nil
}

// early tells whether n bytes of records, written now, would take the
// journal past the process's file size limit, where the records of a new
// journal (after a compaction) would not. Under a limit below
// compactBytes (64 MiB by default), the journal reached it long before a
// compaction: a batch got a 507 each time, before the recovery compacted.
func (c *committer) early(n int64) bool {
	j := c.j
	if c.sizeLimit == 0 || c.noEarly || j.failed || j.end == dataStart || j.end+n <= j.alloc {
		return false
	}
	// As writeRecords grows the file past the limit: by the pages the
	// records need.
	pages := func(n int64) int64 { return (n + 4095) &^ 4095 }
	return j.alloc+pages(j.end+n-j.alloc) > c.sizeLimit && pages(dataStart+n) <= c.sizeLimit
}

// compactLogged compacts, and logs a failure. A failure before the new
// snapshot is in place leaves the store going on with its journal.
func (c *committer) compactLogged() {
	err := c.compact()
	if err == nil {
		return
	}
	// Failed past its snapshot, it broke the store: the one line that
	// says so (recover's for a failed journal write). The requests that
	// meet the store next may be answered with a stop's 504, and log
	// nothing of a restart.
	switch {
	case c.s.Broken() != nil:
		c.s.log.Error("filestore: compaction failed once its snapshot was in place; the store takes no more writes until it is reopened (restart the instance)", "error", err)
	case isNoRoom(err):
		// Said as a journal write's 507 says it: the error alone ended
		// in a bare "file too large".
		c.s.log.Error("filestore: compaction failed: no room for its new snapshot and journal ("+roomWanting(err)+"); the journal keeps growing, and changes fail with 507 once it has no room either", "error", err)
	default:
		c.s.log.Error("filestore: compaction failed; the journal keeps growing", "error", err)
	}
}

// finish applies a committed batch and answers its callers.
func (c *committer) finish(b *batch) {
	s := c.s
	s.mu.Lock()
	c.unreserve(b)
	for _, o := range b.ops {
		if o.err == nil {
			if err := s.apply(o); err != nil {
				// The checks passed: this is a bug, not the caller's.
				o.err = fmt.Errorf("filestore: apply %s record %d: %w", o.kind, o.seq, err)
				s.log.Error("filestore: a checked record did not apply", "op", o.kind, "seq", o.seq, "error", err)
			}
		}
	}
	s.mu.Unlock()
	c.answer(b)
}

// fail answers the batch a failed write or flush carried (failed, nil when
// none), after the recovery. done is the last batch answered, whose
// records are flushed and whose header may not be: the journal is closed
// past it, not before.
func (c *committer) fail(cause error, done, failed *batch) {
	s := c.s
	ops, lazy := 0, 0
	if failed != nil {
		s.mu.Lock()
		c.unreserve(failed)
		s.mu.Unlock()
		ops, lazy = failed.n, failed.lazy
	}
	// Without an answered batch past it, the journal closes at its header.
	var end int64
	var seq uint64
	if done != nil {
		end, seq = done.end, done.last
	}
	err := c.recover(cause, ops, lazy, end, seq)
	// An operation refused by its check was checked against the operations
	// before it in its batch, all of which failed here: its refusal may
	// rest on what never happened (a name taken by a create that failed, a
	// revision moved by an update that failed, an account gone by a remove
	// that failed). Only a refusal that the state alone still makes stands;
	// the others are answered with the failure, as nothing was written for
	// them either, and a retry decides.
	s.mu.RLock()
	if failed != nil {
		for _, o := range failed.ops {
			if o.err == nil {
				o.err = err
				continue
			}
			c.view.reset(s.st)
			if c.view.check(o, s.st.seq+1) == nil {
				o.err = err
			}
		}
	}
	c.view.reset(s.st)
	s.mu.RUnlock()
	if failed != nil {
		c.answer(failed)
	}
}

// unreserve drops a batch's reservations. Callers hold s.mu.
func (c *committer) unreserve(b *batch) {
	for _, k := range b.dead {
		if c.s.pendDead[k]--; c.s.pendDead[k] <= 0 {
			delete(c.s.pendDead, k)
		}
	}
	for _, k := range b.users {
		if c.s.pendUsers[k]--; c.s.pendUsers[k] <= 0 {
			delete(c.s.pendUsers, k)
		}
	}
}

func (c *committer) answer(b *batch) {
	for _, o := range b.ops {
		close(o.done)
	}
}

// apply applies a durable operation. Callers hold s.mu.
func (s *Store) apply(o *op) error {
	switch o.kind {
	case opCreate:
		return s.st.create(o.seq, o.held)
	case opUpdate:
		return s.st.update(o.seq, o.held)
	case opRemove:
		return s.st.remove(o.pub)
	case opUser:
		return s.st.addUser(o.seq, o.user)
	}
	return fmt.Errorf("unknown operation %q", o.kind)
}

// recover follows a failed journal write: the journal is marked closed at
// end (the records answered so far, sequence seq), so that what the failed
// write left past it is never read, and a new generation is written from
// memory, which holds the lazy user records but not the failed operations.
// It returns the error for the callers of the failed batch; when no new
// generation could be written, the store is broken until reopened.
func (c *committer) recover(cause error, ops, lazyBytes int, end int64, seq uint64) error {
	s := c.s
	s.log.Error("filestore: journal write failed; starting a new snapshot and journal", "error", noRoom(cause), "operations_failed", ops, "user_record_bytes", lazyBytes)
	closeErr := c.j.markClosed(end, seq)
	// The next batch is checked against the state alone: what the failed
	// batches would have done is not there.
	c.view.reset(s.st)
	if closeErr != nil {
		s.log.Error("filestore: could not mark the failed journal closed", "error", closeErr)
	}
	err := c.compact()
	if err == nil {
		return fmt.Errorf("filestore: write journal: %w", noRoom(cause))
	}
	broken := fmt.Errorf("filestore: a journal write failed (%w) and no new snapshot could be written (%v); reopen the store: %w: %w", noRoom(cause), err, provision.ErrBroken, provision.ErrUnavailable)
	if closeErr != nil {
		broken = fmt.Errorf("filestore: a journal write failed (%w), neither the journal could be closed (%v) nor a new snapshot written (%v), so the failed change may be read back at the next start; reopen the store: %w: %w", noRoom(cause), closeErr, err, provision.ErrBroken, provision.ErrUnavailable)
	}
	s.mu.Lock()
	s.broken = broken
	s.mu.Unlock()
	s.log.Error("filestore: the store takes no more writes until it is reopened", "error", err)
	return broken
}

// noRoom marks a write that failed for want of room on the disk (or in the
// user's quota, or under the process's file size limit) as
// provision.ErrFull, which the service answers with 507: it takes an
// operator to make room (raise the limit: provision.ErrFileSizeLimit
// too), and a restart once the store broke.
func noRoom(err error) error {
	if errors.Is(err, syscall.EFBIG) {
		// Room on the disk does not help: the 507 says what does.
		return fmt.Errorf("%w: %w: %s: %w", provision.ErrFull, provision.ErrFileSizeLimit, roomWanting(err), err)
	}
	if isNoRoom(err) {
		return fmt.Errorf("%w: %s: %w", provision.ErrFull, roomWanting(err), err)
	}
	return err
}

// isNoRoom tells whether err is a write's failure for want of room on the
// disk (or in the user's quota), or past the process's file size limit
// (RLIMIT_FSIZE: ulimit -f, systemd's LimitFSIZE), which Go reports as
// EFBIG, ignoring the SIGXFSZ that would kill a C program. The limit
// leaves the journal no room as a full disk does: taken for any other
// failure, it was answered 500 and did not let the journal grow into the
// room left below it.
func isNoRoom(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// roomWanting says, for an operator, what has no room in a failure that
// isNoRoom matches.
func roomWanting(err error) string {
	if errors.Is(err, syscall.EFBIG) {
		// The limit itself, read now: "file too large" alone gave an
		// operator neither the cause nor how far to raise it.
		if limit, ok := fileSizeLimit(); ok {
			return fmt.Sprintf("a file of store_dir reached the process's file size limit of %d bytes (ulimit -f, systemd's LimitFSIZE); raise it or lift it", limit)
		}
		return "a file of store_dir reached the process's file size limit (ulimit -f, systemd's LimitFSIZE), or the largest file its file system takes; raise the limit or lift it"
	}
	return "the disk of store_dir has no room"
}

// errNotPlaced is a compaction that failed before its snapshot was in place.
var errNotPlaced = errors.New("filestore: the new snapshot was not put in place")

// compactHook runs while a compaction encodes its snapshot. A test makes
// it wait.
var compactHook = func() {}

// compact writes the state as a new generation and switches to its
// journal. The state is copied under the read lock and encoded after it:
// only the committer changes accounts, and lazy user records wait for the
// lock while it is copied; those that come after go into the new journal.
// Encoded under the lock (0.4 s at 10,000 accounts), a lazy record waiting
// for it held back every read behind it.
func (c *committer) compact() error {
	s := c.s
	start := time.Now()
	id, err := newID()
	if err != nil {
		return err
	}
	s.mu.RLock()
	frozen := s.st.frozen()
	seq := s.st.seq
	held := len(s.lazy) // applied before the snapshot, so in it
	accounts := len(s.st.accounts)
	s.mu.RUnlock()
	compactHook()
	data, err := encodeSnapshot(frozen, id, nil)
	if err != nil {
		return err
	}
	j, placed, err := writeGeneration(s.dir, data, id, seq)
	// Until one succeeds, a batch past the file size limit does not wait
	// for another that would fail as this one did.
	c.noEarly = err != nil
	if err != nil {
		if !placed && !c.j.failed {
			// The old generation is whole: go on with it, and try again
			// when the journal has grown as much again.
			c.nextCompact = c.j.hdr.end + c.compactBytes
			return fmt.Errorf("%w: %w", errNotPlaced, err)
		}
		if placed {
			// The old journal no longer counts, and the new one may not
			// be in place: only a restart can tell which generation is.
			s.mu.Lock()
			s.broken = fmt.Errorf("filestore: a new snapshot was put in place but its journal may not be (%v); reopen the store: %w: %w", err, provision.ErrBroken, provision.ErrUnavailable)
			s.mu.Unlock()
		}
		return err
	}
	s.mu.Lock()
	s.lazy = append(s.lazy[:0:0], s.lazy[held:]...)
	s.mu.Unlock()
	old := c.j
	c.j = j
	c.nextCompact = dataStart + c.compactBytes
	if err := old.close(); err != nil {
		s.log.Warn("filestore: close old journal", "error", err)
	}
	// Changes wait while it runs (the committer writes the snapshot): the
	// time is what an operator needs to tell a compaction from a stall.
	s.log.Info("filestore compacted the journal", "bytes", old.hdr.end, "accounts", accounts, "snapshot", formatID(id), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

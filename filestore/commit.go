package filestore

import (
	"errors"
	"fmt"
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
// the state, writes them with the lazy user records that wait, flushes
// once per batch, then applies them and wakes their callers. After a
// failed write it starts a new generation before answering, so that the
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
	buf          []byte
}

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
	batch := make([]*op, 0, maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		var first *op
		select {
		case o, ok := <-c.in:
			if !ok {
				c.commit(nil)
				return
			}
			first = o
		case now := <-c.kick:
			if now {
				c.commit(nil)
			} else if !armed {
				timer.Reset(lazyDelay)
				armed = true
			}
			continue
		case <-timer.C:
			armed = false
			c.commit(nil)
			continue
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-c.in:
				if !ok {
					break fill
				}
				batch = append(batch, o)
			default:
				break fill
			}
		}
		c.commit(batch)
		for i := range batch {
			batch[i] = nil
		}
	}
}

// commit writes the lazy user records and the batch's operations that
// pass their checks, then applies those and answers every caller.
func (c *committer) commit(batch []*op) {
	s := c.s
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		c.answer(batch, s.broken)
		return
	}
	// User records applied before these operations were checked go first,
	// so that the journal replays in the order of the sequence.
	buf := append(c.buf[:0], s.lazy...)
	lazyLen := len(s.lazy)
	s.lazy = s.lazy[:0]
	c.view.reset(s.st)
	n := 0
	for _, o := range batch {
		if o.err = c.view.check(o, s.st.seq+1); o.err != nil {
			continue
		}
		s.st.seq++
		o.seq = s.st.seq
		buf = appendFrame(buf, o.seq, o.body)
		switch o.kind {
		case opUpdate:
			if !o.account.Live() {
				s.pendDead[o.account.PublicKey] = true
			}
		case opRemove:
			s.pendDead[o.pub] = true
		case opUser:
			s.pendUsers[o.user.PublicKey] = true
		}
		n++
	}
	last := s.st.seq
	s.mu.Unlock()
	c.buf = buf
	if len(buf) == 0 {
		c.answer(batch, nil)
		return
	}

	err := c.j.append(buf, last)

	s.mu.Lock()
	clear(s.pendDead)
	clear(s.pendUsers)
	if err == nil {
		for _, o := range batch {
			if o.err == nil {
				if aerr := s.apply(o); aerr != nil {
					// The checks passed: this is a bug, not the caller's.
					o.err = fmt.Errorf("filestore: apply %s record %d: %w", o.kind, o.seq, aerr)
					s.log.Error("filestore: a checked record did not apply", "op", o.kind, "seq", o.seq, "error", aerr)
				}
			}
		}
	}
	s.mu.Unlock()
	if err != nil {
		err = c.recover(err, n, lazyLen)
		for _, o := range batch {
			if o.err == nil {
				o.err = err
			}
		}
	} else if c.j.hdr.end >= c.nextCompact {
		if cerr := c.compact(); cerr != nil {
			s.log.Error("filestore: compaction failed; the journal keeps growing", "error", cerr)
		}
	}
	for _, o := range batch {
		close(o.done)
	}
}

func (c *committer) answer(batch []*op, err error) {
	for _, o := range batch {
		if o.err == nil {
			o.err = err
		}
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
// its committed length, so that what the failed write left past it is
// never read, and a new generation is written from memory, which holds the
// lazy user records but not the failed operations. It returns the error
// for the callers of the failed batch; when no new generation could be
// written, the store is broken until reopened.
func (c *committer) recover(cause error, ops, lazyBytes int) error {
	s := c.s
	s.log.Error("filestore: journal write failed; starting a new snapshot and journal", "error", cause, "operations_failed", ops, "user_record_bytes", lazyBytes)
	closeErr := c.j.markClosed()
	if closeErr != nil {
		s.log.Error("filestore: could not mark the failed journal closed", "error", closeErr)
	}
	err := c.compact()
	if err == nil {
		return fmt.Errorf("filestore: write journal: %w", cause)
	}
	broken := fmt.Errorf("filestore: a journal write failed (%v) and no new snapshot could be written (%v); reopen the store: %w", cause, err, provision.ErrUnavailable)
	if closeErr != nil {
		broken = fmt.Errorf("filestore: a journal write failed (%v), neither the journal could be closed (%v) nor a new snapshot written (%v), so the failed change may be read back at the next start; reopen the store: %w", cause, closeErr, err, provision.ErrUnavailable)
	}
	s.mu.Lock()
	s.broken = broken
	s.mu.Unlock()
	s.log.Error("filestore: the store takes no more writes until it is reopened", "error", err)
	return broken
}

// errNotPlaced is a compaction that failed before its snapshot was in place.
var errNotPlaced = errors.New("filestore: the new snapshot was not put in place")

// compact writes the state as a new generation and switches to its
// journal. The state is encoded under the read lock: only the committer
// changes accounts, and lazy user records wait for the lock; those that
// come after the encoding go into the new journal.
func (c *committer) compact() error {
	s := c.s
	id, err := newID()
	if err != nil {
		return err
	}
	s.mu.RLock()
	data, err := encodeSnapshot(s.st, id, nil)
	seq := s.st.seq
	held := len(s.lazy) // applied before the snapshot, so in it
	accounts := len(s.st.accounts)
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	j, placed, err := writeGeneration(s.dir, data, id, seq)
	if err != nil {
		if !placed && !c.j.failed {
			// The old generation is whole: go on with it, and try again
			// when the journal has grown as much again.
			c.nextCompact = c.j.hdr.end + c.compactBytes
			return fmt.Errorf("%w: %w", errNotPlaced, err)
		}
		s.mu.Lock()
		s.broken = fmt.Errorf("filestore: a new snapshot was written but its journal could not be put in place (%v); reopen the store: %w", err, provision.ErrUnavailable)
		s.mu.Unlock()
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
	s.log.Info("filestore compacted the journal", "bytes", old.hdr.end, "accounts", accounts, "snapshot", formatID(id))
	return nil
}

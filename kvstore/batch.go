package kvstore

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/jsbatch"
)

// The batch loop writes the user records queued for it. Records in the
// background of keys never written (the keys the service made) go in
// packs, many to a message (pack.go), after lingering a few milliseconds
// for more to gather; each kind is stored in issue order, and a durable
// record is written before the records in the background gathered with
// it. The others, each with a key of its own
// (a durable record queued while the bucket allows atomic batches), go to
// the bucket in atomic batches when its stream allows them (allow_atomic,
// set on every bucket this store creates): a server that syncs every write
// (sync_interval: always, init's single-server setting) then syncs once
// per batch instead of once per record. Measured against nats-server
// v2.15.2 on R1 with sync always: one record per write is acknowledged at
// about 3,000/s and costs the server about 140 µs of CPU each, most of it
// the sync; in batches of a few hundred, 14,000-21,000/s at 40-60 µs each.
// But the server stages an R1 batch in a store of its own on disk before
// it commits it, so a batch costs a few milliseconds whatever its size
// (batches of two: 330 records/s). So the loop sends such records as
// single writes, all at once, while fewer than minBatch wait, and waits
// for their answers; the next records gather meanwhile. Only when the
// server's syncs cannot keep up does a run reach minBatch and go in an
// atomic batch (group commit).
//
// A batch is committed whole or not at all. When it is refused (one of its
// keys exists: a caller-supplied key issued twice, or a record an earlier
// attempt stored) or its answer is lost, each of its records is written
// again on its own by the retry path, which tells those cases apart. A
// stream that refuses it as it allows none (an operator set allow_atomic
// false while the store ran) gets no batch for batchesOffFor after: the
// records go as single writes meanwhile.

// maxBatch bounds the records of one batch; the server refuses batches of
// more than 1,000 messages by default.
const maxBatch = 500

// minBatch is the fewest queued records sent as an atomic batch.
const minBatch = 64

// batchesOffFor is how long the batch loop sends no batch after the
// bucket's stream refused one as it allows none (a variable for tests):
// then it tries one again, which a stream that allows them again stores.
var batchesOffFor = 5 * time.Minute

// maxQueued bounds the records waiting for a batch; AddUser waits for room
// beyond it, as it waits for the jetstream package's async publisher
// beyond its 4,000 pending writes.
const maxQueued = 4000

// enqueue queues a pending write for the next batch, waiting while the
// queue is full.
func (s *Store) enqueue(ctx context.Context, p *pendingWrite) error {
	select {
	case s.queueRoom <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return errClosedStore
	}
	s.amu.Lock()
	s.queue = append(s.queue, p)
	s.amu.Unlock()
	select {
	case s.queueSig <- struct{}{}:
	default:
	}
	return nil
}

// batchLoop writes the queued records, one batch at a time, until the
// store closes. Close waits for the queue to drain first.
func (s *Store) batchLoop() {
	defer s.workers.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.queueSig:
		}
		if hold := s.gatherHook.Load(); hold != nil {
			(*hold)()
		}
		if !s.linger() {
			return
		}
		for {
			if s.stopped() {
				// Close waited its CloseTimeout and gave up on what is
				// left: each chunk could take another Timeout against a
				// server that is down.
				return
			}
			s.amu.Lock()
			n := min(len(s.queue), maxBatch)
			batch := make([]*pendingWrite, n)
			copy(batch, s.queue)
			s.queue = append(s.queue[:0], s.queue[n:]...)
			// A durable record whose caller gave up while it waited here
			// was answered as not stored: it must not be stored after.
			batch = slices.DeleteFunc(batch, func(p *pendingWrite) bool { return p.abandoned })
			s.amu.Unlock()
			if n == 0 {
				break
			}
			// The records with a key each first (durable ones: their
			// callers wait), then those that go in packs: a round trip
			// for each kind. Writing runs of each kind in issue order, a
			// round trip per run, made the loop so slow after a failover
			// that durable adds kept timing out behind it.
			var packed, own []*pendingWrite
			for _, p := range batch {
				if packable(p) {
					packed = append(packed, p)
				} else {
					own = append(own, p)
				}
			}
			switch {
			case len(own) >= minBatch && s.batching():
				s.writeBatch(own)
			case len(own) > 0:
				s.writeSingles(own)
			}
			if len(packed) > 0 {
				s.writePacks(packed)
			}
			for range n {
				<-s.queueRoom
			}
		}
	}
}

// stopped reports whether Close has stopped the store's loops.
func (s *Store) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// packLinger is how long the batch loop lets records in the background
// gather before it writes them, so that a pack holds more than the few
// that arrive during one write's round trip: at a few thousand user.creates
// a second, a write per 10-20 of them instead of one per 2-3. Nothing waits
// for them but RemoveAccount, and a durable record ends the wait.
const packLinger = 5 * time.Millisecond

// linger waits up to packLinger while only records in the background are
// queued, fewer than a pack's worth. It reports false when the store stops.
func (s *Store) linger() bool {
	timer := time.NewTimer(packLinger)
	defer timer.Stop()
	for {
		s.amu.Lock()
		enough := len(s.queue) >= maxBatch
		for _, p := range s.queue {
			if enough {
				break
			}
			enough = !packable(p)
		}
		s.amu.Unlock()
		if enough {
			return true
		}
		select {
		case <-timer.C:
			return true
		case <-s.queueSig:
		case <-s.stop:
			return false
		}
	}
}

// writeSingles sends each write on its own, all at once, and waits for
// their answers, at most the store's timeout and a second: the async
// publisher fails a write it had no answer for within the timeout. It
// waits on the writes' futures, not on the pending writes: a durable
// write whose caller gave up waiting is no longer pending, and its answer
// must not hold up the loop for the whole wait.
func (s *Store) writeSingles(writes []*pendingWrite) {
	futures := make([]jetstream.PubAckFuture, 0, len(writes))
	seen := s.seenRev()
	for _, p := range writes {
		f, err := s.publish(p, seen)
		if err != nil {
			s.amu.Lock()
			p.msg = nil
			s.amu.Unlock()
			s.retryLater([]*pendingWrite{p}, err)
			continue
		}
		futures = append(futures, f)
	}
	deadline := time.After(s.opts.Timeout + time.Second)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case <-f.Err():
		case <-deadline:
			return
		case <-s.stop:
			return
		}
	}
}

// writeBatch writes records as one atomic batch, each expecting the
// revision its key had when it was added (0, or a removed record's delete
// marker), as kv.Create does. What is not stored goes to the retry path.
func (s *Store) writeBatch(batch []*pendingWrite) {
	ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(batch))
	for i, p := range batch {
		m := nats.NewMsg(s.subject + p.key)
		m.Data = p.data
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(p.expected, 10))
		msgs[i] = m
	}
	seen := s.seenRev()
	ack, err := jsbatch.Publish(ctx, s.nc, msgs)
	if batchesDisabled(err) {
		// Said once until a batch is stored again: each window of a
		// batch's worth cost a batch refused before its records were
		// written one by one, and nothing said why.
		if s.noBatchesUntil.Swap(time.Now().Add(s.batchesOff).UnixNano()) == 0 {
			s.log.Info("kvstore: the bucket's stream refused an atomic batch as it allows none (allow_atomic was turned off while the service ran): user records are written one by one, which costs the server more; a batch is tried again now and then (`nats stream edit KV_"+s.opts.Bucket+" --allow-batch` allows them)",
				"retry_in", s.batchesOff)
		}
	}
	if err != nil {
		s.retryLater(batch, err)
		return
	}
	s.noBatchesUntil.Store(0)
	// A committed batch is stored in one piece, in order.
	first := ack.Seq - uint64(len(batch)) + 1
	if s.replacedUnder(batch[0].key, first, seen) {
		for i, p := range batch {
			s.storedElsewhere(p, first+uint64(i))
		}
		return
	}
	for i, p := range batch {
		s.stored(p, first+uint64(i))
	}
}

// batching reports whether the batch loop sends atomic batches now: the
// stream allowed them at Open, and has not refused one lately as it
// allows none.
func (s *Store) batching() bool {
	return s.atomicBatches && time.Now().UnixNano() >= s.noBatchesUntil.Load()
}

// stored confirms a pending write stored at rev.
func (s *Store) stored(p *pendingWrite, rev uint64) {
	s.amu.Lock()
	if p.settled != nil {
		s.amu.Unlock()
		s.withdrawLater(p, rev)
		return
	}
	p.answered = true
	if s.pending[p.key] == p {
		delete(s.pending, p.key)
	}
	s.amu.Unlock()
	s.noteWrite(nil)
	s.confirm(p, rev)
	if p.done != nil {
		p.done <- nil
	}
}

// retryLater hands writes whose batch was not stored to the retry path;
// a durable one's caller writes it itself.
func (s *Store) retryLater(batch []*pendingWrite, err error) {
	s.amu.Lock()
	for _, p := range batch {
		if p.settled != nil {
			s.withdrawLater(p, 0)
			continue
		}
		if p.done != nil {
			p.answered = true
			p.done <- err
			continue
		}
		p.err = err
		s.retryq = append(s.retryq, p)
	}
	s.amu.Unlock()
	s.noteWrite(err)
	select {
	case s.retrySig <- struct{}{}:
	default:
	}
}

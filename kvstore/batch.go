package kvstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/jsbatch"
)

// Asynchronous user records go to the bucket in atomic batches when its
// stream allows them (allow_atomic, set on every bucket this store creates):
// a server that syncs every write (sync_interval: always, init's
// single-server setting) then syncs once per batch instead of once per
// record. Measured against nats-server v2.15.2 on R1 with sync always: one
// record per write is acknowledged at about 3,000/s and costs the server
// about 140 µs of CPU each, most of it the sync; in batches of a few hundred,
// 14,000-21,000/s at 40-60 µs each. But the server stages an R1 batch in a
// store of its own on disk before it commits it, so a batch costs a few
// milliseconds whatever its size (batches of two: 330 records/s). So the
// batch loop sends what is queued as single writes, all at once, while
// fewer than minBatch records wait, and waits for their answers; the next
// records gather meanwhile. Only when the server's syncs cannot keep up
// does the queue reach minBatch, and from then on it goes in atomic batches
// (group commit) until it shrinks again.
//
// A batch is committed whole or not at all. When it is refused (one of its
// keys exists: a caller-supplied key issued twice, or a record an earlier
// attempt stored) or its answer is lost, each of its records is written
// again on its own by the retry path, which tells those cases apart.

// maxBatch bounds the records of one batch; the server refuses batches of
// more than 1,000 messages by default.
const maxBatch = 500

// minBatch is the fewest queued records sent as an atomic batch.
const minBatch = 64

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
		for {
			s.amu.Lock()
			n := min(len(s.queue), maxBatch)
			batch := make([]*pendingWrite, n)
			copy(batch, s.queue)
			s.queue = append(s.queue[:0], s.queue[n:]...)
			s.amu.Unlock()
			if n == 0 {
				break
			}
			if n >= minBatch {
				s.writeBatch(batch)
			} else {
				s.writeSingles(batch)
			}
			for range n {
				<-s.queueRoom
			}
		}
	}
}

// writeSingles sends each write on its own, all at once, and waits for
// their answers (the jetstream package's callbacks), at most the store's
// timeout and a second: the async publisher fails a write it had no answer
// for within the timeout.
func (s *Store) writeSingles(writes []*pendingWrite) {
	var g sync.WaitGroup
	for _, p := range writes {
		g.Add(1)
		p.group = &g
		if err := s.publish(p); err != nil {
			s.amu.Lock()
			p.msg = nil
			s.amu.Unlock()
			s.retryLater([]*pendingWrite{p}, err)
			g.Done()
		}
	}
	answered := make(chan struct{})
	go func() {
		g.Wait()
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(s.opts.Timeout + time.Second):
	case <-s.stop:
	}
}

// writeBatch writes records as one atomic batch, each expecting the
// revision its key had when it was added (0, or a removed record's delete
// marker), as kv.Create does. What is not stored goes to the retry path.
func (s *Store) writeBatch(batch []*pendingWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	msgs := make([]*nats.Msg, len(batch))
	for i, p := range batch {
		m := nats.NewMsg(s.subject + p.key)
		m.Data = p.data
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(p.expected, 10))
		msgs[i] = m
	}
	ack, err := jsbatch.Publish(ctx, s.nc, msgs)
	if err != nil {
		s.retryLater(batch, err)
		return
	}
	// A committed batch is stored in one piece, in order.
	first := ack.Seq - uint64(len(batch)) + 1
	for i, p := range batch {
		s.stored(p, first+uint64(i))
	}
}

// stored confirms a pending write stored at rev.
func (s *Store) stored(p *pendingWrite, rev uint64) {
	s.amu.Lock()
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
		if p.done != nil {
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

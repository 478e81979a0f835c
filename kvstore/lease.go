package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// leaseValue is what a lease entry holds.
type leaseValue struct {
	Instance string `json:"instance"`
	// Token tells this Store from another with the same Instance name.
	Token string `json:"token"`
	// Expires is when the holder's lease ends by the holder's clock. It is
	// for people reading the bucket; no instance compares it with its own
	// clock.
	Expires time.Time `json:"expires"`
	// TTL is the holder's lease time: how long another instance must see
	// the entry unchanged before taking it over.
	TTL time.Duration `json:"ttl_ns"`
}

// leaseSeen is another instance's lease entry as this store first saw it.
type leaseSeen struct {
	rev uint64
	at  time.Time // monotonic
}

var leaseName = regexp.MustCompile(`^[A-Za-z0-9_=-]+(\.[A-Za-z0-9_=-]+)*$`)

// TryLease takes or renews the lease name for this instance and reports
// whether it holds it. The holder may act on it for ttl from when it
// called TryLease, and should renew well before then (at a third of ttl,
// say).
//
// An entry held by another instance is taken over only after this store
// has seen it unchanged (same revision) for the holder's ttl by its own
// monotonic clock: the holder has not renewed for that long, so its lease
// has ended by its own clock too, whatever the clocks of the two machines
// read. A contender therefore has to call TryLease at least twice, a ttl
// apart, to take over a lease abandoned by a crash.
func (s *Store) TryLease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if !leaseName.MatchString(name) {
		return false, invalid("lease name %q: use letters, digits, '-', '_', '=' and dots between them", name)
	}
	if ttl <= 0 {
		return false, invalid("lease %s: ttl %s must be positive", name, ttl)
	}
	err := s.open()
	if err != nil {
		return false, err
	}
	key := leasePrefix + name
	data, _ := json.Marshal(leaseValue{Instance: s.opts.Instance, Token: s.token, Expires: time.Now().Add(ttl).UTC(), TTL: ttl})
	ctx, cancel := s.ctx(ctx)
	defer cancel()

	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return s.takeFree(ctx, name, key, data)
	}
	if err != nil {
		return false, mapErr("read lease "+name, err)
	}
	var cur leaseValue
	if json.Unmarshal(e.Value(), &cur) != nil {
		cur = leaseValue{} // unreadable: taken over like an abandoned one
	}
	if cur.Token != s.token {
		s.lmu.Lock()
		seen, ok := s.leases[key]
		if !ok || seen.rev != e.Revision() {
			seen = leaseSeen{rev: e.Revision(), at: time.Now()}
			s.leases[key] = seen
		}
		s.lmu.Unlock()
		if time.Since(seen.at) < max(cur.TTL, ttl) {
			return false, nil
		}
	}
	for rev, again := e.Revision(), true; ; again = false {
		_, err = s.kv.Update(ctx, key, data, rev)
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			break
		}
		// Another write moved the entry since the read: another
		// instance's, or an earlier write of this store's own that timed
		// out and was stored late, which holds this store's token. Close
		// must release the latter (release checks the token), else the
		// others wait a whole ttl.
		s.mayHold(key)
		// The server refuses a write as a mismatch as well while an
		// earlier write of the key is still in process (sent without an
		// answer yet: the followers away, a failover under way): the
		// entry read is then still the last stored, and nobody is known
		// to hold the lease but this store. Said as unavailable, not as
		// another's hold, and this store's own late write is renewed
		// over: the instance name's renewal took either for another
		// process that took its name over.
		now, gerr := s.kv.Get(ctx, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Deleted since the read (released, or an operator's `nats
			// kv del`): nobody holds it. Said as held by another, the
			// instance name's renewal reported its name taken over.
			return s.takeFree(ctx, name, key, data)
		case gerr != nil:
			return false, mapErr("read lease "+name, gerr)
		case now.Revision() == rev:
			return false, fmt.Errorf("kvstore: renew lease %s: %w: a write of it is still under way", name, provision.ErrUnavailable)
		}
		var nv leaseValue
		if !again || json.Unmarshal(now.Value(), &nv) != nil || nv.Token != s.token {
			return false, nil
		}
		rev = now.Revision()
	}
	if err != nil {
		s.mayHold(key)
		return false, mapErr("renew lease "+name, err)
	}
	if cur.Token != s.token {
		s.log.Info("kvstore: lease taken over", "lease", name, "from", cur.Instance)
	}
	s.holding(key, true)
	return true, nil
}

// takeFree takes the lease key, which has no entry (never taken, or
// released), and reports whether this store got it: false when another
// instance took it first.
func (s *Store) takeFree(ctx context.Context, name, key string, data []byte) (bool, error) {
	// Over a delete marker (a released lease) kv.Create writes twice,
	// and passes the second write's 10164 on a replicated bucket (the
	// other instance's write of the key still under way) as it is:
	// made again once that write settles, it matches ErrKeyExists.
	_, err := createSettled(ctx, s.kv, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil // another instance took it first
	}
	if err != nil {
		s.mayHold(key)
		return false, mapErr("take lease "+name, err)
	}
	s.holding(key, true)
	return true, nil
}

func (s *Store) holding(key string, held bool) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if held {
		s.held[key] = true
		delete(s.leases, key)
	} else {
		delete(s.held, key)
	}
}

// mayHold notes a lease whose write failed without an answer (a timeout,
// a stream leader election): it may have been stored all the same, and
// then this store holds the lease, so Close releases it (release checks
// the token). What this store saw of another holder's entry is kept, so a
// takeover that did not happen still waits from when it was first seen.
func (s *Store) mayHold(key string) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.held[key] = true
}

// ReleaseLease gives up the lease name if this instance holds it, so that
// another can take it at once. Releasing a lease held by another instance,
// or by none, does nothing.
func (s *Store) ReleaseLease(ctx context.Context, name string) error {
	if !leaseName.MatchString(name) {
		return invalid("lease name %q: use letters, digits, '-', '_', '=' and dots between them", name)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.release(ctx, leasePrefix+name)
}

func (s *Store) release(ctx context.Context, key string) error {
	for {
		// The last message of the key, not kv.Get: a delete marker there
		// gives the revision a take of the free lease expects.
		m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+key)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			err = s.releaseFree(ctx, key, 0)
		case err != nil:
			return mapErr("read lease "+key, err)
		case rawEntry{m: m}.Operation() != jetstream.KeyValuePut:
			err = s.releaseFree(ctx, key, m.Sequence)
		default:
			var cur leaseValue
			if json.Unmarshal(m.Data, &cur) != nil || cur.Token != s.token {
				s.holding(key, false)
				return nil
			}
			err = s.kv.Delete(ctx, key, jetstream.LastRevision(m.Sequence))
			if err == nil {
				s.holding(key, false)
			}
		}
		if err == nil {
			return nil
		}
		if !wrongLast(err) {
			if errors.Is(err, provision.ErrUnavailable) {
				return err
			}
			return mapErr("release lease "+key, err)
		}
		// The entry moved since the read: another instance took the
		// lease (read again, it holds another token), or a write of this
		// store's own was stored in between (a renewal cut by the stop,
		// its answer not waited for) or was not yet shown by the
		// replica that answered the read. Left, the latter held the
		// lease for a whole ttl after the release. The server also
		// refuses the delete while an earlier write of the key is still
		// in process: read again a moment later.
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("kvstore: release lease %s: still held by this store, refused as moved: %w: %w", key, provision.ErrUnavailable, ctx.Err())
		case <-t.C:
		}
	}
}

// releaseFree releases the lease key, which has no entry at revision rev
// (0: the key has no message), but which this store may hold: a take of
// it that got no answer (its caller's deadline, a start cancelled, the
// stream's followers away) may still be in process on the stream leader,
// which answers reads from what it has committed. Stored after the
// release, it held the lease with the closed store's token for its whole
// ttl. A delete marker expecting rev settles it: stored, that take never
// can be (it expects rev too); refused as another write of the key under
// way (10164), it is made again until that write settles; refused as the
// wrong revision, the key moved, and the release reads it again.
func (s *Store) releaseFree(ctx context.Context, key string, rev uint64) error {
	s.lmu.Lock()
	held := s.held[key]
	s.lmu.Unlock()
	if !held {
		return nil
	}
	err := untilSettled(ctx, "release lease "+key, func() error {
		_, err := s.js.PublishMsg(ctx, deleteMarker(s.subject+key), jetstream.WithExpectLastSequencePerSubject(rev))
		return err
	})
	if err == nil {
		s.holding(key, false)
	}
	return err
}

// releaseAll releases the leases this store holds, for Close.
func (s *Store) releaseAll() {
	s.lmu.Lock()
	var keys []string
	for k := range s.held {
		keys = append(keys, k)
	}
	s.lmu.Unlock()
	for _, k := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
		if err := s.release(ctx, k); err != nil {
			s.log.Warn("kvstore: cannot release a lease on close; it ends after its ttl", "lease", k, "error", fmt.Sprint(err))
		}
		cancel()
	}
}

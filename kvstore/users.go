package kvstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
)

// Headers of KV operations, as the jetstream package writes them.
const (
	kvOperationHeader = "KV-Operation"
	kvDelete          = "DEL"
	kvPurge           = "PURGE"
)

// voidedHeader marks the delete marker a name's take-over puts at the
// record key of a create that claimed the name and wrote no record, and
// the one that removes the record of a create that lost its name (the
// create backing out, or the sweep after it crashed): the bucket never
// held that account live, and store migrate, which leaves an account the
// bucket removed as it is, must not take the void for a removal.
const voidedHeader = "Provisioner-Voided"

func deleteMarker(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(kvOperationHeader, kvDelete)
	return m
}

// User returns the record of a user public key, in whichever account. It
// fails with ErrNotFound when the bucket holds no record of the key, and
// with ErrUnreadable when its record cannot be read, or when it has no
// readable record while the bucket holds packs of user records this
// instance never read whole (damaged before it started), which may hold
// it.
func (s *Store) User(ctx context.Context, userPub string) (provision.User, error) {
	// A durable write of the key whose caller gave up while it was in
	// flight (answered unavailable) is withdrawn once it lands: until
	// then its record, in the mirror or the bucket, is no answer. The
	// caller reads the key back to tell whether its write landed (the
	// service's userLanded): found before the withdrawal, the user was
	// handed out, and then its record was deleted (creds valid, no record
	// to count or revoke it by).
	if s.withdrawing(userKey(userPub)) != nil {
		// Bounded here only: no timer on the read's usual path.
		wctx, cancel := s.ctx(ctx)
		err := s.awaitWithdrawal(wctx, userKey(userPub))
		cancel()
		if err != nil {
			return provision.User{}, mapErr("read user "+userPub, err)
		}
	}
	find := func() (provision.User, bool, error) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := s.checkOpen(); err != nil {
			return provision.User{}, false, err
		}
		e := s.m.users[userPub]
		if e == nil {
			return provision.User{}, false, nil
		}
		return e.u, true, nil
	}
	u, ok, err := find()
	if err != nil || ok {
		return u, err
	}
	if nkeys.IsValidPublicUserKey(userPub) {
		if err := s.fetchUser(ctx, userPub); err != nil {
			return provision.User{}, err
		}
		if u, ok, err = find(); err != nil || ok {
			return u, err
		}
		// A pack that cannot be read cannot say which users it held:
		// not found, a user it holds was answered 404 (it does not
		// exist) and a create with its key (the service's issuable
		// reads it first) issued the key again.
		s.mu.RLock()
		unknown := s.m.unknownPacks()
		s.mu.RUnlock()
		if len(unknown) > 0 {
			return provision.User{}, fmt.Errorf("kvstore: user %s: %w: no readable record holds it, but the bucket holds packs of user records that cannot be read, which may: %s; put each back whole from a backup of the bucket, or remove it (its users are then not found)", userPub, provision.ErrUnreadable, namedKeys(unknown))
		}
	}
	return provision.User{}, fmt.Errorf("kvstore: user %s: %w", userPub, provision.ErrNotFound)
}

// withdrawing returns the channel closed when the withdrawal of a durable
// write of key ends, or nil when none is under way.
func (s *Store) withdrawing(key string) chan struct{} {
	s.amu.Lock()
	defer s.amu.Unlock()
	if p := s.pending[key]; p != nil {
		return p.settled
	}
	return nil
}

// awaitWithdrawal waits, until ctx ends, for the withdrawal of a durable
// write of key whose caller gave up while it was in flight, if one is
// under way (withdraw).
func (s *Store) awaitWithdrawal(ctx context.Context, key string) error {
	settled := s.withdrawing(key)
	if settled == nil {
		return nil
	}
	select {
	case <-settled:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetchUser reads a user record from the bucket into the mirror.
func (s *Store) fetchUser(ctx context.Context, userPub string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	// The last message of the key, not kv.Get: a delete marker there (a
	// removed user) must reach the mirror, where it takes precedence over
	// a pack that holds the user; kv.Get reports it as no key.
	key := userKey(userPub)
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Or in a pack the mirror has not seen yet. Its failure is the
		// bucket's, as the read's above: bare, a timeout was taken for
		// the request's own deadline.
		if err := s.readPacks(ctx); err != nil {
			return mapErr("read user "+userPub, err)
		}
		return nil
	}
	if err != nil {
		return mapErr("read user "+userPub, err)
	}
	c := s.decode(rawEntry{m: m, key: key})
	if c.err != nil {
		// Damage (a write by hand), or a newer provisioner's record:
		// bare, the decoder's error was a 500 "internal error" that named
		// nothing to repair. Damage names it from now on, as it does one
		// the watcher brings.
		s.applyBrought(c, false)
		return fmt.Errorf("%w: %w", provision.ErrUnreadable, c.err)
	}
	s.mu.Lock()
	s.m.apply(c)
	s.mu.Unlock()
	return nil
}

// Users returns the user records of an account, in issue order. It fails
// with ErrNotFound when the store has no record of the account. (Another
// instance, or a later open, can list a durable record before records in
// the background issued in the same few milliseconds: batch.go.)
func (s *Store) Users(ctx context.Context, account string) ([]provision.User, error) {
	return s.users(ctx, account, nil)
}

// UsersNamed returns the user records of an account with the given name,
// in issue order.
func (s *Store) UsersNamed(ctx context.Context, account, name string) ([]provision.User, error) {
	return s.users(ctx, account, &name)
}

func (s *Store) users(ctx context.Context, account string, name *string) ([]provision.User, error) {
	s.mu.RLock()
	if err := s.checkOpen(); err != nil {
		s.mu.RUnlock()
		return nil, err
	}
	e := s.m.accounts[account]
	known := e != nil && s.m.visible(e)
	s.mu.RUnlock()
	if !known {
		// Not in the mirror yet; Account reads it from the bucket.
		if _, err := s.Account(ctx, account); err != nil {
			return nil, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	au := s.m.byAcct[account]
	if au == nil {
		return []provision.User{}, nil
	}
	list := au.list
	if name != nil {
		list = au.byName[*name]
	}
	out := make([]provision.User, 0, len(list))
	for _, e := range list {
		if !e.gone {
			out = append(out, e.u)
		}
	}
	return out, nil
}

// pendingWrite is a user record written asynchronously whose write is not
// acknowledged yet.
type pendingWrite struct {
	key   string
	data  []byte
	entry *userEntry // what the write made visible in the mirror
	msg   *nats.Msg  // the message of the attempt in flight
	err   error      // why the last attempt failed
	// expected is the key's revision when the record was added: 0, or
	// the delete marker of a removed record.
	expected uint64
	// seen is the highest revision the store had seen when the attempt
	// in flight was sent (replacedUnder).
	seen uint64
	// A durable write waits for its batch: done receives its outcome,
	// and user is the record to show once it is stored.
	done chan error
	user *provision.User
	// abandoned is set, under amu, on a durable write whose caller gave
	// up before its outcome came: queued, the batch loop drops it; in
	// flight, its outcome withdraws it (withdraw), and settled is closed
	// once that is done. answered is set, under amu, once its outcome is
	// on its way to done.
	abandoned bool
	answered  bool
	settled   chan struct{}
}

// AddUser records an issued user. It fails with ErrConflict when the key
// has a record and ErrNotFound when the account has no live record.
//
// With durable true it returns once the record is stored. With durable
// false the record is visible at once and its write is acknowledged in the
// background: failures that may pass are tried again until Close, and a
// key that turns out taken (another instance issued it meanwhile) is
// logged as an error naming the key and gives way to the other record.
func (s *Store) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if err := validUser(u); err != nil {
		return err
	}
	if err := s.liveAccount(ctx, u.Account); err != nil {
		return err
	}
	if err := s.at("add user: account checked"); err != nil {
		return err
	}
	// While the bucket has no room, a record written in the background
	// would fail after its user's creds were handed out, leaving a user
	// the service cannot find to revoke: write it before the reply, so
	// that the caller gets ErrFull and no creds.
	if s.full.Load() {
		durable = true
	}
	return s.addUser(ctx, u, durable)
}

// noteWrite keeps the full state: set by a write that found no room,
// cleared by one that was stored.
func (s *Store) noteWrite(err error) {
	switch {
	case err == nil:
		if s.full.Load() && s.full.Swap(false) {
			s.log.Info("kvstore: the bucket has room again; user records are written in the background again")
		}
	case full(err):
		if !s.full.Swap(true) {
			s.log.Error("kvstore: the bucket has no room: changes fail with 507 and user records are written before the reply until it has; raise disk_storage in the service account's JWT or make room on the servers", "error", err)
		}
	}
}

// liveAccount fails with ErrNotFound unless the account is live.
func (s *Store) liveAccount(ctx context.Context, pub string) error {
	a, err := s.Account(ctx, pub)
	if err != nil {
		return err
	}
	if !a.Live() {
		return fmt.Errorf("kvstore: account %s is %s: %w", pub, a.Phase, provision.ErrNotFound)
	}
	return nil
}

func (s *Store) addUser(ctx context.Context, u provision.User, durable bool) error {
	key := userKey(u.PublicKey)
	data, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("kvstore: encode user %s: %w", u.PublicKey, err)
	}
	conflict := fmt.Errorf("kvstore: user %s: %w: the key has a record", u.PublicKey, provision.ErrConflict)
	if durable {
		// A key in a pack has nothing at its user. key for the create to
		// find: the mirror must hold every pack stored so far.
		if err := s.readPacks(ctx); err != nil {
			return mapErr("add user "+u.PublicKey, err)
		}
	}

	// A durable write of this key whose caller gave up while it was in
	// flight is being withdrawn: its caller was told it is not stored, so
	// its retry must not find the key taken by it.
	if err := s.awaitWithdrawal(ctx, key); err != nil {
		return mapErr("add user "+u.PublicKey, err)
	}

	s.mu.Lock()
	if err := s.checkOpen(); err != nil {
		s.mu.Unlock()
		return err
	}
	if s.m.users[u.PublicKey] != nil {
		s.mu.Unlock()
		return conflict
	}
	s.amu.Lock()
	_, inFlight := s.pending[key]
	if !inFlight {
		// expected: 0, or the delete marker of a removed record.
		p := &pendingWrite{key: key, data: data, expected: s.m.revs[key]}
		if !durable {
			// Visible at once; the write is acknowledged in the background.
			p.entry = s.m.putUser(u, true)
		}
		s.pending[key] = p
	}
	p := s.pending[key]
	s.amu.Unlock()
	s.mu.Unlock()
	if inFlight {
		return conflict
	}

	if durable {
		return s.addDurable(ctx, p, u, conflict)
	}

	// In the background: in a pack (pack.go) when it is a key never
	// written, else on its own.
	if err = s.enqueue(ctx, p); err != nil {
		s.amu.Lock()
		delete(s.pending, key)
		s.amu.Unlock()
		s.mu.Lock()
		if s.m.users[u.PublicKey] == p.entry {
			s.m.dropUser(u.PublicKey)
		}
		s.mu.Unlock()
		return mapErr("add user "+u.PublicKey, err)
	}
	return nil
}

// addDurable writes a user record and returns once it is stored. With
// atomic batches it joins the next batch (batch.go); when that batch is not
// stored, or its answer does not come in time, the record is written on
// its own.
func (s *Store) addDurable(ctx context.Context, p *pendingWrite, u provision.User, conflict error) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if s.atomicBatches {
		p.user, p.done = &u, make(chan error, 1)
		err := s.enqueue(ctx, p)
		if err != nil {
			// Its caller gave up (or the store closes) while it waited
			// for room in a full queue: not queued, and not written on
			// its own either, which stored it after this answer (then
			// withdrew it): for a while every instance listed and
			// counted a user whose creds nobody got.
			s.amu.Lock()
			if s.pending[p.key] == p {
				delete(s.pending, p.key)
			}
			s.amu.Unlock()
			return mapErr("add user "+u.PublicKey, err)
		}
		select {
		case err = <-p.done:
		case <-ctx.Done():
			err = ctx.Err()
			if hook := s.givenUpHook.Load(); hook != nil {
				(*hook)()
			}
			// It must not be kept after this answer, which says it is
			// not stored: still queued, the batch loop drops it; in
			// flight, its outcome withdraws it, and an add of the key
			// waits for that (the retry this answer asks for).
			s.amu.Lock()
			switch {
			case p.answered:
				s.amu.Unlock()
				if err = <-p.done; err == nil {
					return nil // stored made it visible
				}
				if errors.Is(err, provision.ErrBroken) {
					// Stored in a bucket made again, and removed
					// from it (storedElsewhere).
					return mapErr("add user "+u.PublicKey, err)
				}
				// Not written again on its own: the caller has gone.
				// Its write stays pending until withdrawn, as one in
				// flight is: a failure whose answer was lost may be
				// stored all the same, and left pending, its key was
				// refused to the caller's retry for as long as the
				// store ran.
				s.amu.Lock()
				p.settled = make(chan struct{})
				s.amu.Unlock()
				s.withdrawLater(p, 0)
				if !full(err) && !noLimits(err) && !transient(err) {
					// The batch was refused for another record
					// (its key taken meanwhile), which says nothing
					// of this one: not written on its own, it is
					// not stored because its caller gave up, as
					// below, not a 500.
					err = ctx.Err()
				}
				return mapErr("add user "+u.PublicKey, err)
			case slices.Contains(s.queue, p):
				// The batch loop drops it; its key is free for the
				// retry this answer asks for.
				p.abandoned = true
				if s.pending[p.key] == p {
					delete(s.pending, p.key)
				}
				s.amu.Unlock()
				// Not written on its own either: the record written
				// after this answer (then withdrawn) was in the bucket
				// for a while, though the caller was told it is not.
				return mapErr("add user "+u.PublicKey, err)
			default:
				p.abandoned = true
				p.settled = make(chan struct{})
				s.amu.Unlock()
				return mapErr("add user "+u.PublicKey, err)
			}
		}
		if err == nil {
			return nil // stored made it visible
		}
		if errors.Is(err, provision.ErrBroken) {
			// Stored in a bucket made again, and removed from it
			// (storedElsewhere): not written on its own there too.
			return mapErr("add user "+u.PublicKey, err)
		}
	}
	// Written under the store's own deadline, not the caller's: a write
	// in flight when the caller gives up may be stored all the same after
	// the caller was told it is not, and then its retry of the key got
	// ErrConflict and a user whose creds were never handed out was listed
	// and counted. As in a batch, its outcome withdraws it then, and an
	// add of the key waits for that.
	wctx, wcancel := context.WithTimeout(s.life, s.opts.Timeout)
	var rev uint64
	var other jetstream.KeyValueEntry
	var err error
	var unsure bool // stored, but where is not known
	written := make(chan struct{})
	seen := s.seenRev()
	go func() {
		defer close(written)
		rev, other, err = s.createOnce(wctx, p)
		if err == nil && other == nil && rev <= seen {
			// Not past what the store had seen: an earlier attempt's
			// record, which createOnce found, or one stored in a bucket
			// made again (replacedUnder); the stream tells which, a
			// round trip only here. Stored where is not known, it is
			// withdrawn as a write without an answer.
			err = s.storedInOpened(wctx, p, rev)
			unsure = err != nil && !errors.Is(err, errNotInOpened)
		}
	}()
	select {
	case <-written:
		wcancel()
	case <-ctx.Done():
		s.amu.Lock()
		p.settled = make(chan struct{})
		s.amu.Unlock()
		s.withdrawAfter(p, func() uint64 {
			<-written
			wcancel()
			if err != nil || other != nil {
				return 0 // withdraw finds out whether it is stored
			}
			return rev
		})
		return mapErr("add user "+u.PublicKey, ctx.Err())
	}
	if errors.Is(err, errNotInOpened) {
		s.amu.Lock()
		if s.pending[p.key] == p {
			delete(s.pending, p.key)
		}
		s.amu.Unlock()
		return mapErr("add user "+u.PublicKey, cmp.Or(s.Broken(), errClosedStore))
	}
	var refused *jetstream.APIError
	if err != nil && (unsure || !errors.As(err, &refused) || busy(err)) {
		// No answer, not a refusal: the write timed out with the caller
		// (whose deadline the store's own timeout matches, and which it
		// ends first only by a hair: under load the write's timeout is
		// as often seen first), or the connection went; or refused until
		// then while another write of the key, its batch's, was in
		// flight. It may be stored all the same, as the stream commits
		// it once its followers are back, after this answer says it is
		// not: withdrawn as when the caller gives up first.
		s.amu.Lock()
		p.settled = make(chan struct{})
		s.amu.Unlock()
		s.withdrawLater(p, 0)
		return mapErr("add user "+u.PublicKey, err)
	}
	s.amu.Lock()
	if s.pending[p.key] == p {
		delete(s.pending, p.key)
	}
	s.amu.Unlock()
	if other != nil {
		return conflict
	}
	s.noteWrite(err)
	if err != nil {
		return mapErr("add user "+u.PublicKey, err)
	}
	// As confirm does for a record stored in a batch: a record stored
	// after the mirror saw its account removed is a stray, which the
	// watcher, bringing it back as seen, would leave.
	c := change{key: p.key, rev: rev, user: &u}
	var strays []stray
	s.mu.Lock()
	if s.m.apply(c) {
		strays = s.m.straysAfter(c)
	}
	twice := s.m.takeTwice()
	s.mu.Unlock()
	s.removeStrays(strays)
	s.logTwice(twice)
	return nil
}

// publish sends an attempt of a pending write: a create, as kv.Create
// makes it (the key's last revision must be expected), sent once the
// store had seen revision seen. Its answer goes to asyncAcked or
// asyncFailed, and to the future returned.
func (s *Store) publish(p *pendingWrite, seen uint64) (jetstream.PubAckFuture, error) {
	m := nats.NewMsg(s.subject + p.key)
	m.Data = p.data
	s.amu.Lock()
	p.msg, p.seen = m, seen
	s.amu.Unlock()
	return s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(p.expected))
}

// asyncAcked is the jetstream package's callback for an acknowledged
// asynchronous write. It must not block.
func (s *Store) asyncAcked(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	key := strings.TrimPrefix(m.Subject, s.subject)
	s.amu.Lock()
	p := s.pending[key]
	if p == nil || p.msg != m {
		s.amu.Unlock()
		return
	}
	if seen := p.seen; ack.Sequence <= seen {
		s.amu.Unlock()
		if s.replacedUnder(p.key, ack.Sequence, seen) {
			s.storedElsewhere(p, ack.Sequence)
		}
		return
	}
	if p.settled != nil {
		s.amu.Unlock()
		s.withdrawLater(p, ack.Sequence)
		return
	}
	p.answered = true
	delete(s.pending, key)
	s.amu.Unlock()
	s.noteWrite(nil)
	s.confirm(p, ack.Sequence)
	if p.done != nil {
		p.done <- nil
	}
}

// asyncFailed is the jetstream package's callback for a failed
// asynchronous write; it may hold the publisher's lock, so it only queues
// the write for retryLoop.
func (s *Store) asyncFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	key := strings.TrimPrefix(m.Subject, s.subject)
	s.amu.Lock()
	p := s.pending[key]
	if p == nil || p.msg != m {
		s.amu.Unlock()
		return
	}
	p.msg = nil
	if p.settled != nil {
		s.amu.Unlock()
		s.withdrawLater(p, 0)
		return
	}
	if p.done != nil {
		// A durable write's caller writes it again itself.
		p.answered = true
		s.amu.Unlock()
		p.done <- err
		return
	}
	p.err = err
	s.retryq = append(s.retryq, p)
	s.amu.Unlock()
	s.noteWrite(err)
	select {
	case s.retrySig <- struct{}{}:
	default:
	}
}

// withdrawLater withdraws, in the background (withdraw), a durable write
// whose caller gave up while it was in flight: stored at rev, or, with rev
// 0, failed (its answer perhaps lost: it may be stored all the same).
func (s *Store) withdrawLater(p *pendingWrite, rev uint64) {
	s.withdrawAfter(p, func() uint64 { return rev })
}

// withdrawAfter is withdrawLater for a write whose revision outcome
// returns once known. Once Close waits for what runs in the background it
// starts nothing: the write stays pending, and Close names its key as not
// confirmed; settled is closed, so that an add of the key is refused as
// closed rather than waiting for a withdrawal that never comes.
func (s *Store) withdrawAfter(p *pendingWrite, outcome func() uint64) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.retriesDone {
		close(p.settled)
		return
	}
	s.retries.Add(1)
	go func() {
		defer s.retries.Done()
		s.withdraw(p, outcome())
	}()
}

// withdraw deletes the record of a durable write answered as not stored
// (its caller gave up while it was in flight) that was stored all the
// same: its caller's retry of the key would find it taken, and a user
// whose creds were never handed out would be listed and counted. The write
// stays pending until then, so that an add of its key waits. A withdrawal
// that fails for a passing reason (the bucket away for the whole timeout)
// is tried again until Close: given up at once, it left the record, and
// nothing else removes it (its account is live: no sweep takes it).
func (s *Store) withdraw(p *pendingWrite, rev uint64) {
	defer func() {
		s.amu.Lock()
		if s.pending[p.key] == p {
			delete(s.pending, p.key)
		}
		s.amu.Unlock()
		close(p.settled)
	}()
	for {
		err := s.withdrawOnce(p, rev)
		if err == nil {
			return
		}
		if !transient(err) || s.life.Err() != nil {
			s.log.Warn("kvstore: cannot withdraw a durable user write answered as not stored; its key stays taken", "key", p.key, "error", err)
			return
		}
		if s.nc.IsClosed() {
			// Closed for good (creds expired or revoked): every attempt
			// fails "connection closed", and tried again, it warned each
			// second until Close, which waited its whole CloseTimeout for
			// the write kept pending.
			s.log.Warn("kvstore: cannot withdraw a durable user write answered as not stored: the NATS connection is closed for good; if it was stored, its user (whose creds were never handed out) stays listed and counted until an operator revokes it by its public key", "key", p.key, "error", err)
			return
		}
		s.log.Warn("kvstore: cannot withdraw a durable user write answered as not stored yet; trying again", "key", p.key, "error", err)
		// A delete that timed out may have landed: the next attempt
		// reads the key again.
		rev = 0
		select {
		case <-s.life.Done():
		case <-time.After(time.Second):
		}
	}
}

// withdrawOnce is one attempt of withdraw: stored at rev, or, with rev 0,
// perhaps stored.
func (s *Store) withdrawOnce(p *pendingWrite, rev uint64) error {
	ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
	defer cancel()
	if rev == 0 {
		// No record at the key says nothing yet: the write may be in the
		// stream leader's log, not committed (its followers away), and
		// stored once they are back, while the leader answers reads from
		// what it has committed. A delete marker expecting the revision
		// the write expected settles it: stored, the write never can be
		// (it expects that revision too); refused as another write of
		// the key under way (10164), the write is still in flight, and
		// this is tried again; refused as the wrong revision, the key
		// holds a record, read below.
		var ack *jetstream.PubAck
		err := untilSettled(ctx, "withdraw "+p.key, func() (err error) {
			ack, err = s.js.PublishMsg(ctx, deleteMarker(s.subject+p.key), jetstream.WithExpectLastSequencePerSubject(p.expected))
			return err
		})
		if err == nil {
			s.mu.Lock()
			s.m.apply(change{key: p.key, rev: ack.Sequence, del: true})
			s.mu.Unlock()
			return nil // not stored, and now it cannot be
		}
		if !wrongLast(err) {
			return fmt.Errorf("tell whether it was stored: %w", err)
		}
		e, err := s.kv.Get(ctx, p.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || err == nil && !bytes.Equal(e.Value(), p.data) {
			return nil // not stored: another write took the key
		}
		if err != nil {
			return fmt.Errorf("tell whether it was stored: %w", err)
		}
		rev = e.Revision()
	}
	if err := s.at("withdraw: delete"); err != nil {
		return err
	}
	ack, err := s.js.PublishMsg(ctx, deleteMarker(s.subject+p.key), jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.m.apply(change{key: p.key, rev: ack.Sequence, del: true})
	s.mu.Unlock()
	return nil
}

// confirm records the revision a pending write was stored at, and shows
// a durable one.
//
// A record stored after the mirror saw its account removed is a stray, as
// if another instance had written it: a user added while its account was
// being removed (the removal's listing missed it, and the account's
// delete marker came while the record was pending, which straysAfter
// leaves to its writer).
func (s *Store) confirm(p *pendingWrite, rev uint64) {
	var strays []stray
	var twice []provision.User
	defer func() {
		s.removeStrays(strays)
		s.logTwice(twice)
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.user != nil {
		c := change{key: p.key, rev: rev, user: p.user}
		if s.m.apply(c) {
			strays = s.m.straysAfter(c)
		}
		return
	}
	if p.entry != nil && s.m.users[p.entry.u.PublicKey] != p.entry {
		// The mirror dropped the record while it was pending (a delete
		// marker at its key from a removal of its account, or the
		// removal of a pack that held it) and the write then stored it:
		// what the bucket holds is applied as the watcher would apply it,
		// which will take it for seen. Only marking the revision seen
		// hid the record here, a stray of a removed account included,
		// which no watcher of this instance would then remove.
		c := change{key: p.key, rev: rev, user: &p.entry.u}
		if s.m.apply(c) {
			strays = s.m.straysAfter(c)
		}
		twice = s.m.takeTwice()
		return
	}
	if s.m.revs[p.key] < rev {
		s.m.revs[p.key] = rev
	}
	if p.entry != nil {
		p.entry.pending = false
		// Its own record takes precedence over a pack that holds it too
		// (a pack whose answer was lost, stored after all).
		s.m.unpack(p.entry)
		strays = s.m.straysAfter(change{key: p.key, rev: rev, user: &p.entry.u})
	}
}

// maxRetrying bounds the failed asynchronous writes tried again at once.
const maxRetrying = 32

// retryLoop starts a retry for every failed asynchronous write, until the
// store closes.
func (s *Store) retryLoop() {
	defer s.workers.Done()
	sem := make(chan struct{}, maxRetrying)
	for {
		select {
		case <-s.stop:
			return
		case <-s.retrySig:
		}
		s.amu.Lock()
		q := s.retryq
		s.retryq = nil
		s.amu.Unlock()
		for _, p := range q {
			s.retries.Add(1)
			go func() {
				defer s.retries.Done()
				s.retry(p, sem)
			}()
		}
	}
}

// retry writes a pending record again, synchronously, until it is stored,
// found taken, or the store closes. kv.Create tells a key that exists;
// an existing record equal to this one is an earlier attempt that was
// stored after all.
func (s *Store) retry(p *pendingWrite, sem chan struct{}) {
	// A refused create is resolved at once by reading the key; a write
	// that may not have reached the stream waits a little first.
	var wait time.Duration
	if transient(p.err) {
		s.log.Warn("kvstore: asynchronous user write failed; trying again", "key", p.key, "error", p.err)
		wait = 100 * time.Millisecond
	}
	if full(p.err) || noLimits(p.err) {
		wait = 100 * time.Millisecond
	}
	unchecked := false // the check of where a stored attempt went failed
	for attempt := 1; ; attempt++ {
		select {
		case <-s.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*max(wait, 50*time.Millisecond), 2*time.Second)
		if s.Broken() != nil {
			// The bucket was deleted or replaced under the store (lose):
			// a record stored now would land in a bucket that never held
			// its account, a user no stray removal takes. It stays
			// unconfirmed, and Close names it.
			return
		}
		select {
		case <-s.stop:
			return
		case sem <- struct{}{}:
		}
		if hook := s.retryHook.Load(); hook != nil {
			(*hook)(p.key)
		}
		ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
		rev, other, err := s.createOnce(ctx, p)
		if other == nil {
			s.noteWrite(err)
		}
		stored := err == nil && other == nil
		if stored {
			// The check above does not keep the bucket from being
			// deleted and made again before the write (nor does the
			// jetstream package's own retry of a write that found no
			// stream), and a create of a key never written is met by
			// any bucket of the name: stored in the new one, the
			// record was a user of an account it never held.
			err = s.storedInOpened(ctx, p, rev)
		}
		cancel()
		<-sem
		switch {
		case errors.Is(err, errNotInOpened):
			// Not in the bucket opened, as for a lost store above: it
			// stays unconfirmed, and Close names it.
			return
		case stored && err != nil:
			// Stored, but where is not known yet: the next attempt's
			// create finds the record and checks again, until Close, as
			// for any failure that may pass. Said once: without it the
			// record stayed unconfirmed with nothing in the log saying
			// why.
			if !unchecked {
				unchecked = true
				s.log.Warn("kvstore: asynchronous user write stored, but whether in the bucket this instance opened cannot be told yet; trying again", "key", p.key, "error", err)
			}
			continue
		case err == nil && other == nil:
			s.amu.Lock()
			delete(s.pending, p.key)
			s.amu.Unlock()
			s.confirm(p, rev)
			if transient(p.err) || attempt > 1 {
				s.log.Info("kvstore: asynchronous user write stored after retrying", "key", p.key, "attempts", attempt+1)
			}
			return
		case other != nil:
			c := s.decode(other)
			if c.err == nil && c.user != nil && p.entry != nil && revokedFirst(*c.user, p.entry.u) {
				s.log.Info("kvstore: a user key was revoked on another instance before this instance's record of it was stored; the revoked record is kept", "key", p.key, "name", p.entry.u.Name)
			} else {
				s.log.Error("kvstore: user key was issued twice; keeping the record stored first, this instance's is dropped", "key", p.key)
			}
			s.amu.Lock()
			delete(s.pending, p.key)
			s.amu.Unlock()
			s.mu.Lock()
			if p.entry != nil && s.m.users[p.entry.u.PublicKey] == p.entry {
				s.m.dropUser(p.entry.u.PublicKey)
			}
			if c.err == nil {
				s.m.apply(c)
			}
			s.mu.Unlock()
			return
		case !transient(err) && !full(err) && !noLimits(err) && attempt >= 5:
			// A full bucket is not given up on: the user's creds are out,
			// and only its record lets the service find it to revoke. Nor
			// is one that has no limit for its tier (the account's limits
			// changed between flat and tiered), which a restart of the
			// servers mends.
			s.amu.Lock()
			delete(s.pending, p.key)
			s.amu.Unlock()
			s.mu.Lock()
			// A pack whose answer was lost may hold it after all: then it
			// is stored, and stays shown (and counted in its pack).
			inPack := p.entry != nil && p.entry.pack != ""
			if p.entry != nil && s.m.users[p.entry.u.PublicKey] == p.entry && !inPack {
				s.m.dropUser(p.entry.u.PublicKey)
			}
			s.mu.Unlock()
			if !inPack {
				s.log.Error("kvstore: asynchronous user write failed for good; the user works but is missing from user.list", "key", p.key, "error", err)
			}
			return
		}
	}
}

// errNotInOpened is a retried write found, once stored, in a bucket other
// than the one the store opened (storedInOpened).
var errNotInOpened = errors.New("kvstore: the bucket was deleted under the store; the user record is not in the bucket it opened")

// storedInOpened checks that a retried write of p, stored at rev, went to
// the bucket's stream the store opened: a stream once deleted never comes
// back with its creation time, so one found there after the write held
// the key's name during it. Stored in another (the bucket deleted and
// made again), the record is withdrawn from it, expecting rev there (a
// write that went to the old stream does not meet it), the store is lost
// (sameStream), and errNotInOpened returned. Without an answer, or with
// no stream found (which the watchdog asks three times before it takes
// the bucket for deleted), it fails as the read did, and the retry goes
// on: its next create finds the record and checks again.
func (s *Store) storedInOpened(ctx context.Context, p *pendingWrite, rev uint64) error {
	if err := s.at("retry: stream check"); err != nil {
		return err
	}
	if err := s.sameStream(ctx); err == nil || !errors.Is(err, provision.ErrBroken) {
		return err
	}
	if derr := s.deleteAt(ctx, p.key, rev); derr != nil && !errors.Is(derr, jetstream.ErrKeyRevisionMismatch) {
		s.log.Error("kvstore: a user record was written into the bucket made again after this instance's was deleted, and cannot be removed from it; remove it by hand (nats kv del)", "key", p.key, "error", derr)
	}
	return errNotInOpened
}

// seenRev returns the highest revision the store has seen of its
// bucket's stream: a write sent after it is read, stored in that stream
// as a new message, is stored past it (a stream's sequence only grows).
func (s *Store) seenRev() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return max(s.m.watched, s.m.top.rev)
}

// replacedUnder reports whether a write of key sent once the store had
// seen revision seen, and stored as a new message at rev, went to a
// stream other than the one the store opened: rev not past seen. The
// bucket was then deleted and made again (or put back to an earlier
// state) before the watchdog found it, and the store is lost. It is a
// comparison, no round trip, so that every first attempt is checked (a
// retry, whose record may be an earlier attempt's, asks the stream:
// storedInOpened); a new stream already written past seen when the write
// came is left to the watchdog.
func (s *Store) replacedUnder(key string, rev, seen uint64) bool {
	if rev > seen {
		return false
	}
	s.lose(fmt.Sprintf("deleted and made again, or put back to an earlier state (a write of %s was stored at revision %d, while this instance had seen revision %d before it sent it)", key, rev, seen))
	return true
}

// storedElsewhere handles a first attempt of p stored at rev in a stream
// other than the one the store opened (replacedUnder): it is removed from
// there; a durable write's caller is answered with why, and a record in
// the background stays unconfirmed, as a retry's (storedInOpened), and
// Close names it.
func (s *Store) storedElsewhere(p *pendingWrite, rev uint64) {
	s.amu.Lock()
	p.msg = nil
	if p.settled != nil {
		// Its caller gave up: its withdrawal removes it.
		s.amu.Unlock()
		s.withdrawLater(p, rev)
		return
	}
	if p.done != nil {
		p.answered = true
		if s.pending[p.key] == p {
			delete(s.pending, p.key)
		}
	}
	s.amu.Unlock()
	s.removeElsewhere(p.key, rev)
	if p.done != nil {
		p.done <- cmp.Or(s.Broken(), errClosedStore)
	}
}

// removeElsewhere removes, in the background, the entry of key stored at
// rev in a stream other than the one the store opened.
func (s *Store) removeElsewhere(key string, rev uint64) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.retriesDone {
		return
	}
	s.retries.Add(1)
	go func() {
		defer s.retries.Done()
		ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
		defer cancel()
		if err := s.deleteAt(ctx, key, rev); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Error("kvstore: a user record was written into the bucket made again after this instance's was deleted, and cannot be removed from it; remove it by hand (nats kv del)", "key", key, "error", err)
		}
	}()
}

// createOnce creates a pending record. It returns the revision stored at,
// or the other entry holding the key, or the error.
func (s *Store) createOnce(ctx context.Context, p *pendingWrite) (uint64, jetstream.KeyValueEntry, error) {
	rev, err := createSettled(ctx, s.kv, p.key, p.data)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, nil, err
	}
	e, gerr := s.kv.Get(ctx, p.key)
	if errors.Is(gerr, jetstream.ErrKeyNotFound) {
		// Refused while another write of the key (an earlier attempt)
		// is replicated: the create's own error says to try again.
		return 0, nil, err
	}
	if gerr != nil {
		return 0, nil, gerr
	}
	if bytes.Equal(e.Value(), p.data) {
		return e.Revision(), nil, nil
	}
	return 0, e, nil
}

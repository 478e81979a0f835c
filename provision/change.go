package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/natsprov/provisioner/api"
)

// changeTimeout bounds the work of one version of an account: the wait for
// the next second, the store write, the push and, when it fails, putting
// things back. It does not end with the request that asked for the change:
// a change once taken is finished or undone.
const changeTimeout = 2 * time.Minute

// maxStaleRetries bounds how often a version is made again on top of a
// change another instance stored first.
const maxStaleRetries = 8

// applyFunc changes the working copy of an account and its claims. It must
// leave both as they were when it returns an error. It may run more than
// once, on newer versions, when another instance changed the account
// first.
type applyFunc func(a *Account, c *jwt.AccountClaims) error

// published is what one version of an account was, and what its push did.
type published struct {
	account Account
	claims  *jwt.AccountClaims
	result  PushResult
	// phase and waiting tell how far a delete got (PhaseDisabled with the
	// servers that have not confirmed, or PhaseDeleted).
	phase   Phase
	waiting []string
	// unchanged: the changes asked for what the account already was, and
	// no version was made (sameValues).
	unchanged bool
}

// change is one requested change to an existing account, waiting for the
// version it joins.
type change struct {
	apply applyFunc
	// repeatable: apply may run again on a version that already holds its
	// effect (a revocation) and changes nothing it should not there.
	repeatable bool
	// sameValues: the change sets values (an update); when it and the
	// others of its version set only what the account already has, no
	// version is made. A version that differed only in its issue time
	// pushed the same account to every server, took the account's one
	// version a second, and was audited as a change.
	sameValues bool
	// keep: when the push of its version fails, the version stays in the
	// store for the reconciler to push, rather than being put back. For a
	// withdrawal (withdrawUser): put back, it lived on in one instance's
	// memory alone, and a crash or a stop before its retry landed left
	// its user active for good.
	keep bool
	// recheck, when set, checks the account's recorded users against a
	// version of it again (checkRoleUsers, checkAccountTagUsers), as
	// apply did: old is the version it was made from, a and c the new
	// one. On a shared store it runs once the version is stored and the
	// store's reads of users hold every record stored before it
	// (usersAgain).
	recheck func(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error
	done    chan struct{}
	out     published
	err     error
}

func (c *change) finish(out published, err error) {
	c.out, c.err = out, err
	close(c.done)
}

// queue holds the changes to one account that wait for the next version.
type queue struct {
	pending []*change
}

// queues are the per-account queues that have a worker.
type queues struct {
	mu      sync.Mutex
	m       map[string]*queue
	workers sync.WaitGroup
}

// submit hands a change to the account's worker, starting one if needed,
// and waits for the version it joined. It does not give up when ctx ends:
// a change once taken lands or is undone, and its caller must know which.
func (s *Service) submit(pub string, apply applyFunc) (published, error) {
	return s.enqueue(pub, &change{apply: apply, done: make(chan struct{})})
}

// submitRepeatable is submit for a change that may be applied again on top
// of a version that already holds it: when the write of its version is in
// doubt and the store moved on past the version it was based on, it is
// made again on top of the newer one rather than failed.
func (s *Service) submitRepeatable(pub string, apply applyFunc) (published, error) {
	return s.enqueue(pub, &change{apply: apply, repeatable: true, done: make(chan struct{})})
}

// submitValues is submit for a change that sets values: when the account
// already has them, it is answered unchanged, with no new version.
func (s *Service) submitValues(pub string, apply applyFunc) (published, error) {
	return s.enqueue(pub, &change{apply: apply, sameValues: true, done: make(chan struct{})})
}

// submitChecked is submitValues for a change that checked the account's
// recorded users (recheck): on a shared store they are checked again once
// its version is stored (usersAgain).
func (s *Service) submitChecked(pub string, apply applyFunc, recheck func(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error) (published, error) {
	return s.enqueue(pub, &change{apply: apply, sameValues: true, recheck: recheck, done: make(chan struct{})})
}

// submitResign is submit for a re-sign (a reconcile pass's, an operator
// rotation's), whose caller need not know how it ended: a re-sign that did
// not land is made again by the next pass. It stops waiting when ctx ends;
// the change goes on under its own deadline, which Close bounds. Waiting
// it out, a stop whose pass was in a re-sign held for as long as the
// change's deadline (changeTimeout) when its push or store write hung.
func (s *Service) submitResign(ctx context.Context, pub string) error {
	c := &change{apply: s.resign, done: make(chan struct{})}
	s.hand(pub, c)
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return fmt.Errorf("re-sign of account %s left to its worker: %w", pub, ctx.Err())
	}
}

// enqueue hands c to the account's worker and waits for it; see submit.
func (s *Service) enqueue(pub string, c *change) (published, error) {
	s.hand(pub, c)
	<-c.done
	return c.out, c.err
}

// hand gives c to the account's worker, starting one if needed.
func (s *Service) hand(pub string, c *change) {
	qs := &s.queues
	qs.mu.Lock()
	if qs.m == nil {
		qs.m = map[string]*queue{}
	}
	q := qs.m[pub]
	start := q == nil
	if start {
		q = &queue{}
		qs.m[pub] = q
		qs.workers.Add(1)
	}
	q.pending = append(q.pending, c)
	qs.mu.Unlock()
	if start {
		go s.work(pub, q)
	}
}

// take returns the changes waiting in q. With none, and last set, the
// worker retires and the queue is removed.
func (qs *queues) take(pub string, q *queue, last bool) []*change {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	b := q.pending
	q.pending = nil
	if len(b) == 0 && last {
		delete(qs.m, pub)
	}
	return b
}

// work makes versions of one account until no change waits.
func (s *Service) work(pub string, q *queue) {
	defer s.queues.workers.Done()
	for {
		batch := s.queues.take(pub, q, true)
		if len(batch) == 0 {
			return
		}
		s.version(pub, q, batch)
	}
}

// version makes one version of an account out of a batch of changes:
// apply them to the current version, wait for the next second (changes
// arriving meanwhile join), sign, store it with the revision it was based
// on, push it, and put the account back when the push fails.
func (s *Service) version(pub string, q *queue, batch []*change) {
	ctx, cancel := context.WithTimeout(s.halted, changeTimeout)
	defer cancel()
	defer s.locks.lock("account:" + pub)()
	fail := func(cs []*change, err error) {
		for _, c := range cs {
			c.finish(published{}, err)
		}
	}
	fresh := false
	for attempt := 0; ; attempt++ {
		a, err := s.account(ctx, pub, fresh)
		if err != nil {
			fail(batch, err)
			return
		}
		if !a.Live() {
			fail(batch, fmt.Errorf("%w: account %s (%q) was deleted", ErrNotFound, pub, a.Name))
			return
		}
		prev, err := s.state(a)
		if err != nil {
			fail(batch, err)
			return
		}
		next, claims := a, (*jwt.AccountClaims)(nil)
		if claims, err = claimsCopy(prev.claims); err != nil {
			fail(batch, err)
			return
		}
		batch = s.applyAll(&next, claims, batch)
		if len(batch) == 0 {
			return
		}
		// Signed with another operator signing key than the one in use
		// (a rotation whose re-sign of this account has not happened or
		// failed), the current version is not what a new one would be.
		if sameValues(batch) && prev.claims.Issuer == s.operator().SignerKey && sameVersion(a, next, prev.claims, claims) {
			if _, ok := s.store.(latestReader); ok && !fresh {
				// A cached read may be behind a version another
				// instance stored: decide on the store's latest.
				fresh = true
				continue
			}
			// No new version, but the current one is pushed again: it
			// may be on no server yet (a write whose acknowledgement was
			// lost, another instance paused between its write and its
			// push), and the reply's server answers say they hold it.
			res, err := s.resolver.Update(ctx, a.JWT)
			s.confirm.record(pub, prev.claims.ID, res)
			if err != nil {
				fail(batch, fmt.Errorf("push account %s: %w", pub, err))
				return
			}
			s.afterPush(ctx, pub, a.JWT)
			out := published{account: a, claims: prev.claims, result: res, phase: a.Phase, unchanged: true}
			for _, c := range batch {
				c.finish(out, nil)
			}
			return
		}
		if err := afterIssue(ctx, prev.claims.IssuedAt); err != nil {
			fail(batch, err)
			return
		}
		// Changes that arrived during the wait join this version.
		batch = append(batch, s.applyAll(&next, claims, s.queues.take(pub, q, false))...)
		if next.Live() {
			s.prune(ctx, pub, claims)
		}
		token, err := s.signKeeping(claims, prev.claims.Expires)
		if errors.Is(err, ErrInvalid) && len(batch) > 1 {
			// One change may have made the version unsignable (too
			// large): it fails alone, not the others it joined.
			next, claims, batch = s.signable(ctx, a, prev.claims, batch)
			if len(batch) == 0 {
				return
			}
			token, err = s.signKeeping(claims, prev.claims.Expires)
		}
		if err != nil {
			fail(batch, err)
			return
		}
		next.JWT = token
		rev, err := s.store.UpdateAccount(ctx, next, a.Revision)
		if errors.Is(err, ErrUnavailable) {
			// The write may have landed all the same (an acknowledgement
			// lost in a stream leader election): find out before saying
			// it failed.
			r, ok, known := s.landed(ctx, pub, token)
			switch {
			case ok:
				rev, err = r, nil
			case !known:
				err = inDoubt("the new version of account "+pub, err)
			case r > a.Revision && repeatable(batch):
				// Another version is in the store on top of the one
				// this was based on: this write landed under it, or
				// lost to it. Answered unavailable, a revocation in
				// effect was told failed. Made again on top, the
				// changes are in the version this answers with.
				err = fmt.Errorf("%w: %w", ErrStale, err)
			}
		}
		if errors.Is(err, ErrStale) && attempt < maxStaleRetries {
			// Another instance changed the account first: make this
			// version again on top of theirs.
			fresh = true
			continue
		}
		if errors.Is(err, ErrStale) {
			// Other instances kept winning: nothing of this version was
			// stored. As ErrStale it was a 409, which callers take for a
			// name or key taken and do not retry, though a retry is what
			// helps.
			fail(batch, fmt.Errorf("%w: account %s was changed by other instances %d times in a row while this version was made; nothing was changed: %v", ErrUnavailable, pub, attempt+1, err))
			return
		}
		if err != nil {
			fail(batch, fmt.Errorf("store account %s: %w", pub, err))
			return
		}
		next.Revision = rev
		if err := s.usersAgain(ctx, rev, &next, prev.claims, claims, batch); err != nil {
			// A user another instance issued meanwhile does not fit
			// the version, or whether one does cannot be told: it goes
			// no further than the store, and is put back there. Made
			// again, the change that does not fit fails its own check
			// (apply), and the others of the batch get a version.
			s.log.Warn("a change was stored that what other instances stored meanwhile does not allow (the account's users checked again against its role templates or tags, or its imports against their exporters); the account is put back", "account", pub, "name", next.Name, "error", err)
			var unseen error
			if errors.Is(err, errUnseen) {
				// The store's reads of users did not catch up in
				// usersAgainWait: the put-back's check would wait for
				// the same watcher as long again, and its 503 came
				// after twice the wait (a short request_timeout heard
				// 504).
				unseen = err
			}
			if perr := s.restore(ctx, a, next, true, unseen); perr != nil {
				fail(batch, fmt.Errorf("%w: account %s: %v, and the previous version could not be put back in the store, which keeps the change for the reconciler to push: %v", ErrInDoubt, pub, err, perr))
				return
			}
			if errors.Is(err, ErrUnavailable) {
				// Nothing tells yet whether the users allow it: the
				// changes that checked them fail, the others go on.
				batch = slices.DeleteFunc(batch, func(c *change) bool {
					if c.recheck != nil {
						c.finish(published{}, fmt.Errorf("%w: nothing was changed: %w", ErrUnavailable, err))
						return true
					}
					return false
				})
			}
			if len(batch) == 0 {
				return
			}
			if attempt >= maxStaleRetries {
				fail(batch, fmt.Errorf("%w: account %s: nothing was changed: %w", ErrUnavailable, pub, err))
				return
			}
			fresh = true
			continue
		}
		var res PushResult
		if next.Live() {
			res, err = s.resolver.Update(ctx, token)
			s.confirm.record(pub, claims.ID, res)
		} else {
			res, err = s.pushDisabled(ctx, pub, token)
		}
		// A failed create not taken back yet (abandon) that this version
		// may have put on a server: its take-back must now disable and
		// delete it there. Remembered as on no server, the take-back
		// forgot its keys and left it live on the servers, an orphan.
		s.mayHoldAbandoned(pub, err == nil || mayHaveStored(res, err))
		if err != nil && next.Live() && kept(batch) {
			// The store holds the version: any instance's reconciler
			// pushes it (joined by a delete, it is put back as usual,
			// and the withdrawal tried again: retryWithdraw). The
			// changes that joined it stand as well: told the push's
			// own error (a 502 says nothing was changed), their
			// callers would take them for failed.
			s.log.Warn("the push of a version that withdraws a user failed; the store keeps it and the reconciler pushes it", "account", pub, "name", next.Name, "error", err)
			s.remember(next, claims, prev)
			if mayHaveStored(res, err) {
				// On some server, maybe over a newer version another
				// instance stored and pushed meanwhile, as a push that
				// went through.
				s.afterPush(ctx, pub, token)
			}
			out := published{account: next, claims: claims, result: res, phase: next.Phase}
			for _, c := range batch {
				if c.keep {
					c.finish(out, nil)
				} else {
					c.finish(published{}, fmt.Errorf("%w: push account %s failed (%v); the store keeps the change, joined by a withdrawal, for the reconciler to push", ErrInDoubt, pub, err))
				}
			}
			return
		}
		if err != nil {
			perr := s.restore(ctx, a, next, mayHaveStored(res, err), nil)
			if !next.Live() && errors.Is(perr, ErrConflict) {
				// A delete whose account cannot be put back: its name,
				// freed by the tombstone, was taken meanwhile. The
				// tombstone stays and the reconciler finishes the
				// delete, so it stands: told it failed, its caller
				// retried "delete <name>" and deleted the new account.
				s.log.Warn("the push of a deleted account's disabled version failed and its name is taken by another account; the delete stands and the reconciler pushes it", "account", pub, "name", next.Name, "error", err)
				s.remember(next, claims, prev)
				out := published{account: next, claims: claims, result: res, phase: PhaseDisabled,
					waiting: s.confirm.missing(pub, claims.ID, s.resolver.Servers())}
				for _, c := range batch {
					c.finish(out, nil)
				}
				return
			}
			if perr != nil {
				// The store keeps the change, and any instance's
				// reconciler pushes it: told the push's own error (a
				// 502 says nothing was changed), its caller took it
				// for failed.
				fail(batch, fmt.Errorf("%w: push account %s failed (%v), and the previous version could not be put back in the store, which keeps the change for the reconciler to push: %v", ErrInDoubt, pub, err, perr))
				return
			}
			fail(batch, fmt.Errorf("push account %s: %w", pub, err))
			return
		}
		s.remember(next, claims, prev)
		out := published{account: next, claims: claims, result: res, phase: next.Phase}
		if next.Phase == PhaseDisabled {
			out.phase, out.waiting = s.finishDelete(ctx, next)
		}
		s.afterPush(ctx, pub, token)
		for _, c := range batch {
			c.finish(out, nil)
		}
		return
	}
}

// usersFollower is a store shared by instances whose reads of users come
// from a copy that follows the store (kvstore's mirror), which may not
// hold a record another instance has just stored.
type usersFollower interface {
	// SeenThrough waits until reads of users hold every record stored
	// before revision rev; ErrUnavailable when ctx ends first.
	SeenThrough(ctx context.Context, rev uint64) error
}

// usersAgainWait bounds the wait for a shared store's reads of users to
// hold every record stored before a version (usersAgain): a few
// deliveries of its watcher, or a stream leader's failover.
const usersAgainWait = 5 * time.Second

// errUnseen is usersAgain's error when the wait for the store's reads of
// users ended first (usersAgainWait).
var errUnseen = errors.New("what other instances stored meanwhile (users issued, an exporter's change) could not be checked")

// usersAgain checks the account's recorded users again, once the version
// (next, claims) is stored at rev, for the changes of batch that checked
// them (recheck). A user issued on another instance is checked there
// against the account's latest version once its record is stored
// (latestOnceRecorded); a change here checked the users in this
// instance's copy of the store, which may not have held that record yet.
// When the user's check read the version before this one, neither saw
// the other, and a template that puts the user's name or tags into
// subjects applied to it unchecked. Checked after its own write, in the
// store's order, one of them sees the other. Nothing to do on a store of
// one instance.
func (s *Service) usersAgain(ctx context.Context, rev uint64, next *Account, old, claims *jwt.AccountClaims, batch []*change) error {
	f, ok := s.store.(usersFollower)
	if !ok || !next.Live() || !slices.ContainsFunc(batch, func(c *change) bool { return c.recheck != nil }) {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, usersAgainWait)
	defer cancel()
	if err := f.SeenThrough(wctx, rev); err != nil {
		return fmt.Errorf("%w: %w", errUnseen, err)
	}
	for _, c := range batch {
		if c.recheck == nil {
			continue
		}
		if err := c.recheck(ctx, next, old, claims); err != nil {
			return err
		}
	}
	return nil
}

// sameValues tells whether every change of batch sets values.
func sameValues(batch []*change) bool {
	for _, c := range batch {
		if !c.sameValues {
			return false
		}
	}
	return true
}

// sameVersion tells whether next, with claims, is the account a with its
// claims prev but for the issue time and ID a new signature would give.
func sameVersion(a, next Account, prev, claims *jwt.AccountClaims) bool {
	a.JWT, next.JWT, a.Revision, next.Revision = "", "", 0, 0
	if !reflect.DeepEqual(a, next) {
		return false
	}
	p, c := *prev, *claims
	p.IssuedAt, c.IssuedAt, p.ID, c.ID = 0, 0, "", ""
	pj, err1 := json.Marshal(&p)
	cj, err2 := json.Marshal(&c)
	return err1 == nil && err2 == nil && bytes.Equal(pj, cj)
}

// repeatable tells whether every change of batch may be applied again.
func repeatable(batch []*change) bool {
	for _, c := range batch {
		if !c.repeatable {
			return false
		}
	}
	return true
}

// kept tells whether a change of batch keeps its version in the store when
// its push fails (keep).
func kept(batch []*change) bool {
	return slices.ContainsFunc(batch, func(c *change) bool { return c.keep })
}

// landedWait bounds how long a write in doubt is looked for: a stream
// leader election takes seconds.
const landedWait = 15 * time.Second

// landedPoll is the pause between two reads of landed, and between two
// writes of a put-back or take-back the store answered unavailable: it
// may answer at once (a stream without a leader) while reads still work,
// and writing again at once hammered a cluster electing a stream leader
// with hundreds of writes a second.
const landedPoll = 250 * time.Millisecond

// landedRead bounds each read of readBack and afterPush: a read sent while
// the stream has no leader gets no answer at all, and waited out with the
// store's own timeout (5s) it was sent again only seconds after the bucket
// was back, the request answered that much later (past a 10s client
// timeout). A stream that has a leader answers in milliseconds.
const landedRead = time.Second

// writeUntilLanded writes a version of account pub whose JWT is token
// (write), and while the store answers unavailable finds out whether the
// write landed all the same (an acknowledgement lost) or not (a request
// that never reached the stream leader), writing again after landedPoll
// when it did not, for up to landedWait. It returns the revision stored
// at, or write's last error.
func (s *Service) writeUntilLanded(ctx context.Context, pub, token string, write func() (uint64, error)) (uint64, error) {
	rev, err := write()
	for until := time.Now().Add(landedWait); errors.Is(err, ErrUnavailable); {
		if r, ok, _ := s.landed(ctx, pub, token); ok {
			return r, nil
		}
		if !time.Now().Before(until) || !pause(ctx, landedPoll) {
			break
		}
		rev, err = write()
	}
	return rev, err
}

// pause waits for d, or until ctx ends; it reports whether ctx is still
// alive.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// landed reports whether an account's current version in the store is
// token, after a write of it failed as unavailable, and the current
// version's revision. known is false when the store could not be read
// (0 then): the write may have landed, or may land yet (a write nats.go
// kept in its reconnect buffer is sent when the connection is back). It
// asks again while the store is unavailable, until ctx ends.
func (s *Service) landed(ctx context.Context, pub, token string) (rev uint64, ok, known bool) {
	if _, ok := s.store.(latestReader); !ok {
		// A local store's failed write failed: it is not in doubt.
		return 0, false, true
	}
	var cur Account
	err := readBack(ctx, func(ctx context.Context) (err error) {
		cur, err = s.account(ctx, pub, true)
		return err
	})
	switch {
	case err == nil:
		return cur.Revision, cur.JWT == token, true
	case errors.Is(err, ErrNotFound):
		return 0, false, true
	}
	return 0, false, false
}

// readBack runs read, a read of what a write that failed as unavailable
// may have stored, again while the store answers unavailable, every
// landedPoll for up to landedWait or until ctx ends, and returns its last
// error: nil or ErrNotFound when the store could tell.
func readBack(ctx context.Context, read func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, landedWait)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, landedRead)
		err := read(rctx)
		rcancel()
		if !errors.Is(err, ErrUnavailable) || !pause(ctx, landedPoll) {
			return err
		}
	}
}

// inDoubt is the error of a write that failed as unavailable and whose
// outcome the store could not tell afterwards.
func inDoubt(what string, err error) error {
	return fmt.Errorf("%w: %s: the store did not answer, then could not be read to tell whether the write landed; it may have, or may still: %w", ErrInDoubt, what, err)
}

// signable makes a version of a out of the changes of batch again, one at
// a time: a change after which the version cannot be signed (ErrInvalid:
// too large, or invalid with the others) is finished with that error and
// left out. It returns the version, its claims (pruned) and the changes it
// carries.
func (s *Service) signable(ctx context.Context, a Account, base *jwt.AccountClaims, batch []*change) (Account, *jwt.AccountClaims, []*change) {
	next := a
	claims, err := claimsCopy(base)
	if err != nil {
		for _, ch := range batch {
			ch.finish(published{}, err)
		}
		return next, nil, nil
	}
	kept := batch[:0]
	for _, ch := range batch {
		trial := next
		trialClaims, err := claimsCopy(claims)
		if err == nil {
			if kept := s.applyAll(&trial, trialClaims, []*change{ch}); len(kept) == 0 {
				continue // finished with its own error, or handed back (after a delete)
			}
			var probe *jwt.AccountClaims
			if probe, err = claimsCopy(trialClaims); err == nil {
				if trial.Live() {
					s.prune(ctx, a.PublicKey, probe)
				}
				_, err = s.signKeeping(probe, base.Expires)
			}
		}
		if err != nil {
			ch.finish(published{}, err)
			continue
		}
		next, claims = trial, trialClaims
		kept = append(kept, ch)
	}
	if next.Live() {
		s.prune(ctx, a.PublicKey, claims)
	}
	return next, claims, kept
}

// applyAll applies each change to the working copy; those that refuse are
// finished with their error and left out of the result. One that follows a
// delete is left out too, handed back to the account's worker for the next
// version: once the delete lands it finds the account deleted (404), and
// if the delete's push fails, the put-back live version. Finished at once
// as "being deleted", a revoke that joined a delete whose push then failed
// was answered 404 while the account was put back live, its user still
// able to connect.
func (s *Service) applyAll(a *Account, c *jwt.AccountClaims, batch []*change) []*change {
	kept := batch[:0]
	for _, ch := range batch {
		if !a.Live() {
			s.hand(a.PublicKey, ch)
			continue
		}
		if err := ch.apply(a, c); err != nil {
			ch.finish(published{}, err)
			continue
		}
		kept = append(kept, ch)
	}
	return kept
}

// account reads an account; fresh asks the store for its latest committed
// version, past any cache, as a retry after ErrStale must.
func (s *Service) account(ctx context.Context, pub string, fresh bool) (Account, error) {
	var a Account
	var err error
	if l, ok := s.store.(latestReader); ok && fresh {
		a, err = l.AccountLatest(ctx, pub)
	} else {
		a, err = s.store.Account(ctx, pub)
	}
	if errors.Is(err, ErrNotFound) {
		return Account{}, fmt.Errorf("%w: account %s was deleted", ErrNotFound, pub)
	}
	return a, err
}

// latestReader is a store whose reads may lag its latest committed state
// (a cache of a replicated store) and that can read past it.
type latestReader interface {
	AccountLatest(ctx context.Context, pub string) (Account, error)
}

// latestJWTReader is a latestReader that reads the latest JWT alone, at
// less cost: what afterPush needs after every push.
type latestJWTReader interface {
	LatestJWT(ctx context.Context, pub string) (string, error)
}

// remember caches the state of a version that was just published, reusing
// the signing key pairs of the version it was made from.
func (s *Service) remember(next Account, claims *jwt.AccountClaims, prev *state) {
	if !slices.Equal(next.SigningKeys, prev.from) {
		// The signing keys changed: derive them again on next use.
		s.cache.Delete(next.PublicKey)
		return
	}
	s.cache.Store(next.PublicKey, &state{jwt: next.JWT, claims: claims, signers: prev.signers, from: prev.from})
}

// mayHaveStored tells whether a failed push may have left the change on
// some server: one said it stored it, or one may have without saying so (no
// answer in time). Only a push that was never sent, or that every server
// answered without storing, left nothing.
func mayHaveStored(res PushResult, err error) bool {
	switch {
	case errors.Is(err, ErrNotSent):
		return false
	case res.Stored() > 0:
		return true
	}
	for _, r := range res {
		if !r.Answered {
			return true
		}
	}
	return len(res) == 0
}

// restore puts an account back to prev after the push of next failed. When
// a server may hold next, prev's content is signed anew (a newer iat) and
// pushed; either way the store gets prev's content back at a new revision.
// It returns the error of the store write that puts prev back, or of
// signing prev anew (nil when it landed): either way the store keeps
// next. unseen is the error of a wait for the store's reads of users that
// has just ended (usersAgain), nil when there was none: the put-back's users
// are then not checked once it is stored (revokeMisfits); those the
// store's reads hold already are checked before, and the put-back revokes
// any that does not fit it (misfitsNow). The caller holds the account's
// lock.
func (s *Service) restore(ctx context.Context, prev, next Account, repush bool, unseen error) error {
	log := s.log.With("account", prev.PublicKey, "name", prev.Name)
	if _, shared := s.store.(latestReader); shared {
		// Another instance's reconciler may have pushed next from the
		// store meanwhile (the account lock is this instance's alone):
		// what a server may hold is not this push's alone to say.
		repush = true
	}
	// prev's content is signed anew either way: versions only move
	// forward, also in the store, where another instance may have pushed
	// next meanwhile.
	back := prev
	claims, err := decodeAccount(prev.JWT)
	var folded []User
	if err == nil {
		// prev's content keeps its expiry, passed or not.
		claims = withIssued(claims, mustIssued(next.JWT))
		// The users another instance issued while next stood that the
		// store's reads already hold, and that do not fit prev, are
		// revoked in the put-back itself: revoked in a second write,
		// an instance killed between the two left the put-back stored
		// without them, and any reconciler pushed it, each such user
		// valid under prev. Those issued while the put-back is being
		// written are checked once it is stored (revokeMisfits below).
		folded = s.misfitsNow(ctx, back, claims)
		if err = afterIssue(ctx, claims.IssuedAt); err == nil {
			// As revokeMisfits: revoked as of now, past the second
			// of the version before, as the put-back's iat.
			for _, u := range folded {
				claims.RevokeAt(u.PublicKey, time.Unix(max(time.Now().Unix(), u.IssuedAt), 0))
			}
			back.JWT, err = s.signKeeping(claims, claims.Expires)
		}
	}
	if err != nil {
		log.Error("could not sign the previous version of an account after a failed push; the store keeps the failed change and the reconciler pushes it", "error", err)
		// The failed change stands, as when the put-back's write fails:
		// answered nil, its caller was told the push's error (a 502 says
		// nothing was changed) of a change the reconciler pushes.
		return fmt.Errorf("sign the previous version anew: %w", err)
	}
	// A put-back written in doubt that did not land left the failed change
	// in the store, where any instance's reconciler pushed it, while its
	// caller was told it failed.
	rev, err := s.writeUntilLanded(ctx, prev.PublicKey, back.JWT, func() (uint64, error) {
		return s.store.UpdateAccount(ctx, back, next.Revision)
	})
	if err != nil {
		log.Error("could not put an account back in the store after a failed push; the reconciler pushes the store's version", "error", err)
		if errors.Is(err, ErrStale) {
			// Another instance stored a version on top of next, which
			// keeps next's change: a role template refused because a
			// user does not fit it then stands with that user active.
			// The users are checked against what stands instead, and
			// those that do not fit it are revoked.
			if now, rerr := s.account(ctx, prev.PublicKey, true); rerr == nil {
				s.revokeMisfits(ctx, now, "a change of its role that could not be put back stands, and it does not fit it", log, unseen)
			}
		}
		if repush {
			// next may be on a server, over a newer version another
			// instance stored and pushed meanwhile.
			s.afterPush(ctx, prev.PublicKey, next.JWT)
		}
		return err
	}
	back.Revision = rev
	s.cache.Delete(prev.PublicKey)
	if len(folded) > 0 {
		s.misfitsRevoked(ctx, back, folded, "issued while a change of its role stood, which was put back; it does not fit the version put back", log)
		repush = true
	}
	if fixed, ok := s.revokeMisfits(ctx, back, "issued while a change of its role stood, which was put back; it does not fit the version put back", log, unseen); ok {
		back, repush = fixed, true
	}
	if !repush {
		return nil
	}
	res, err := s.resolver.Update(ctx, back.JWT)
	s.confirm.record(back.PublicKey, jti(back.JWT), res)
	// Another instance may have changed the account during the push.
	s.afterPush(ctx, back.PublicKey, back.JWT)
	if err != nil {
		log.Error("could not push the previous version of an account after a failed push; the reconciler retries", "error", err)
		return nil
	}
	log.Info("put an account back")
	return nil
}

// revokeMisfits checks the account's users against a put-back (back, its
// previous content stored again) on a shared store, or against the version
// that stands when the put-back lost to another instance's; why says which. Another instance that
// issued a user while the change being put back stood checked the user
// against that change: a user named "*" fits a template that does not use
// the name, and the put-back's "telemetry.{{name()}}.>" gave it
// "telemetry.*.>", every device's subjects. Once the store's reads of
// users hold every record stored before the put-back, in the store's order
// either that instance's check read the put-back (and refused the user) or
// the user is seen here: one that no longer fits is revoked, in a version
// stored on top of the put-back before either is pushed. It returns that
// version, or ok false when nothing was revoked (the put-back stands as it
// is). Whether users fit that cannot be told (the store's reads stalled)
// leaves the put-back as it is, logged: a put-back cannot be refused.
// unseen, when not nil, is the error of a wait for those reads that has
// just ended: they are not waited for again.
func (s *Service) revokeMisfits(ctx context.Context, back Account, why string, log *slog.Logger, unseen error) (Account, bool) {
	return s.revokeMisfitsFrom(ctx, back, why, log, 0, unseen)
}

// revokeMisfitsFrom is revokeMisfits after depth writes lost to another
// instance's.
func (s *Service) revokeMisfitsFrom(ctx context.Context, back Account, why string, log *slog.Logger, depth int, unseen error) (Account, bool) {
	f, shared := s.store.(usersFollower)
	if !shared || !back.Live() {
		return back, false
	}
	err := unseen
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, usersAgainWait)
		err = f.SeenThrough(wctx, back.Revision)
		cancel()
	}
	var users []User
	if err == nil {
		users, err = s.store.Users(ctx, back.PublicKey)
	}
	claims, cerr := decodeAccount(back.JWT)
	if err == nil {
		err = cerr
	}
	if err != nil {
		log.Warn("the users other instances issued while a change stood could not be checked against the version put back; any that does not fit it keeps its role's subjects under it", "error", err)
		return back, false
	}
	misfits := s.misfitsOf(back, claims, users)
	if len(misfits) == 0 {
		return back, false
	}
	fixed := back
	err = afterIssue(ctx, claims.IssuedAt)
	if err == nil {
		for _, u := range misfits {
			claims.RevokeAt(u.PublicKey, time.Unix(max(time.Now().Unix(), u.IssuedAt), 0))
		}
		fixed.JWT, err = s.signKeeping(claims, claims.Expires)
	}
	if err == nil {
		fixed.Revision, err = s.writeUntilLanded(ctx, back.PublicKey, fixed.JWT, func() (uint64, error) {
			return s.store.UpdateAccount(ctx, fixed, back.Revision)
		})
	}
	if errors.Is(err, ErrStale) && depth < maxStaleRetries {
		// Another instance stored a version on top of back meanwhile:
		// the users are checked against that one.
		if now, rerr := s.account(ctx, back.PublicKey, true); rerr == nil {
			return s.revokeMisfitsFrom(ctx, now, why, log, depth+1, nil)
		}
	}
	if err != nil {
		keys := make([]string, len(misfits))
		for i, u := range misfits {
			keys[i] = u.PublicKey
		}
		log.Error("users issued while a change stood do not fit the version put back, and could not be revoked; revoke them", "users", keys, "error", err)
		return back, false
	}
	s.misfitsRevoked(ctx, back, misfits, why, log)
	return fixed, true
}

// misfitsRevoked logs and announces the revocation of misfits in a
// version of account a that was stored.
func (s *Service) misfitsRevoked(ctx context.Context, a Account, misfits []User, why string, log *slog.Logger) {
	keys := make([]string, len(misfits))
	for i, u := range misfits {
		keys[i] = u.PublicKey
	}
	log.Warn("users that do not fit the account's version are revoked: "+why, "users", keys)
	for _, u := range misfits {
		s.emit(ctx, api.Event{Type: api.EventUserRevoked, Account: a.PublicKey, AccountName: a.Name, User: u.PublicKey, UserName: u.Name, Role: u.Role, Caller: api.Caller{Kind: "admin"}, Result: "revoked: " + why})
	}
}

// misfitsNow is the users of a put-back (back, with claims not signed
// yet) on a shared store that the store's reads hold now, not waited
// for, and that do not fit it: revoked in the put-back's own write. Any
// its reads do not hold yet is left to revokeMisfits once the put-back is
// stored; a read that fails leaves them all to it.
func (s *Service) misfitsNow(ctx context.Context, back Account, claims *jwt.AccountClaims) []User {
	if _, shared := s.store.(usersFollower); !shared || !back.Live() {
		return nil
	}
	users, err := s.store.Users(ctx, back.PublicKey)
	if err != nil {
		return nil
	}
	return s.misfitsOf(back, claims, users)
}

// misfitsOf is the active users of a role, of users, that do not fit
// the role's template in a version of account a (claims).
func (s *Service) misfitsOf(a Account, claims *jwt.AccountClaims, users []User) []User {
	var misfits []User
	for _, u := range users {
		// As checkRoleUsers: a user past its expiry on this clock only
		// may still connect to a server whose clock runs behind.
		if u.Revoked || s.expiredEverywhere(u) || claims.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) || u.Role == "" {
			continue
		}
		signer := u.Signer
		if signer == "" {
			signer = roleKey(&a, u.Role)
		}
		// As checkRoleUsers: a template that gives bearer_token makes the
		// JWT of a self-service user, which travelled on the tenant's
		// inbox, connect without its seed, whatever its name and tags (a
		// put-back to a role that gave bearer tokens, of a user issued
		// while the change that took them away stood).
		if sc, ok := claims.SigningKeys[signer].(*jwt.UserScope); ok && sc != nil && sc.Template.BearerToken && u.SelfService {
			misfits = append(misfits, u)
			continue
		}
		if templateSafe(u.Name, u.Tags) {
			continue // fits every template a change can make (CreateUser)
		}
		// As checkRoleUsers: names and tags only when the record has them.
		if (u.Name != "" && checkTemplateName(claims, signer, u.Role, u.Name) != nil) || (u.TagsRecorded && checkTemplateTags(claims, signer, u.Role, u.Tags) != nil) {
			misfits = append(misfits, u)
		}
	}
	return misfits
}

// withIssued returns claims whose iat is iat, so that signNext waits past
// the second of the version they follow rather than their own.
func withIssued(c *jwt.AccountClaims, iat int64) *jwt.AccountClaims {
	c.IssuedAt = max(c.IssuedAt, iat)
	return c
}

// mustIssued returns the iat of a JWT this service signed, 0 if unreadable.
func mustIssued(token string) int64 {
	c, err := decodeAccount(token)
	if err != nil {
		return 0
	}
	return c.IssuedAt
}

// afterPush makes sure a push did not overwrite a newer version: with
// several instances on one store, another may have stored and pushed a
// newer version while this push was under way, and a server keeps whatever
// arrives last. It reads the store past any cache and pushes what it holds
// when that moved on.
func (s *Service) afterPush(ctx context.Context, pub, pushed string) {
	l, ok := s.store.(latestReader)
	if !ok {
		return // one instance: nothing else changes the account
	}
	// A push is done whether or not its request is still waiting: what it
	// may have overwritten is set right with a deadline of its own.
	ctx, cancel := context.WithTimeout(s.halted, changeTimeout)
	defer cancel()
	// Each push of a newer version is itself a push that a still newer
	// one may have overtaken: read again after it.
	read := func() (string, error) {
		ctx, cancel := context.WithTimeout(ctx, landedRead)
		defer cancel()
		if lj, ok := l.(latestJWTReader); ok {
			return lj.LatestJWT(ctx, pub)
		}
		a, err := l.AccountLatest(ctx, pub)
		return a.JWT, err
	}
	// A read the store answers unavailable (a stream leader election) is
	// asked again for up to landedWait: given up at once, a stale push
	// that landed last, maybe without a revocation already acknowledged,
	// stayed on the servers until a reconcile pass.
	latest := func() (string, error) {
		cur, err := read()
		for until := time.Now().Add(landedWait); errors.Is(err, ErrUnavailable) && time.Now().Before(until) && pause(ctx, landedPoll); {
			cur, err = read()
		}
		return cur, err
	}
	for range maxStaleRetries {
		cur, err := latest()
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("could not read an account back after a push; if another instance changed it meanwhile, the reconciler pushes the newer version", "account", pub, "error", err)
		}
		if err != nil || cur == pushed || mustIssued(cur) < mustIssued(pushed) {
			return
		}
		s.log.Info("account changed by another instance during a push; pushing the newer version", "account", pub)
		res, err := s.resolver.Update(ctx, cur)
		s.confirm.record(pub, jti(cur), res)
		if err != nil {
			s.log.Warn("could not push the newer version; the reconciler retries", "account", pub, "error", err)
			return
		}
		pushed = cur
	}
}

// pushDisabled pushes a deleted account's disabled version and records
// which servers confirmed it. A server that refuses it as "jwt store is
// full" holds no version of the account (a full resolver refuses only a
// new account, and takes an update of one it holds): there is nothing to
// disable there, and it counts as having confirmed. Refused so, the
// tombstone of an account no server could take (a create refused as full,
// taken back) was pushed and counted failed by every pass, never finished,
// and a delete of an account a full server does not hold was put back.
func (s *Service) pushDisabled(ctx context.Context, pub, token string) (PushResult, error) {
	id := jti(token)
	res, err := s.resolver.Update(ctx, token)
	s.confirm.record(pub, id, res)
	var refused *RefusedError
	if err == nil || !errors.As(err, &refused) {
		return res, err
	}
	var full []Server
	for _, r := range res {
		switch {
		case r.Stored || !r.Answered:
		case r.Code == 200:
			// A cache resolver's answer ("jwt update cache skipped"):
			// it refused nothing, and no delete waits for it. Taken for
			// a refusal, the delete of an account a full server does
			// not hold failed in every deployment with a leaf or edge
			// server, and was put back, each try the same.
		case strings.HasSuffix(r.Message, storeFull):
			full = append(full, Server{Name: r.Server, ID: r.ServerID})
		default:
			return res, err // refused for another reason
		}
	}
	if len(full) == 0 {
		return res, err
	}
	s.confirm.set(pub, id, full)
	return res, nil
}

// storeFull ends a full resolver's refusal of a new account.
const storeFull = "jwt store is full"

// finishDelete moves a disabled account on: once every known server has
// confirmed its disabled version, it sends the DELETE, and once every known
// server has carried that out (or servers do not allow deletes), the
// tombstone is final. It returns the phase reached and the servers still
// waited for. The caller holds the account's lock.
func (s *Service) finishDelete(ctx context.Context, a Account) (Phase, []string) {
	log := s.log.With("account", a.PublicKey, "name", a.Name)
	servers := s.resolver.Servers()
	if shared := sharedNames(servers); len(shared) > 0 {
		// Two servers answer under one name: what it confirmed (one
		// entry per name, a request waiting for one instance) may be
		// one's alone. Taken as both's, the DELETE went out and the
		// tombstone was final while the other, slower, had refused
		// the disabled version and held the account live.
		log.Warn("account disabled; the DELETE waits: two servers answer with one name, and which of them confirmed cannot be told; give each its own server_name", "waiting", strings.Join(shared, ","))
		return PhaseDisabled, shared
	}
	if waiting := s.confirm.missing(a.PublicKey, jti(a.JWT), servers); len(waiting) > 0 {
		log.Info("account disabled; the DELETE waits for servers that have not confirmed", "waiting", strings.Join(waiting, ","))
		return PhaseDisabled, waiting
	}
	if pending := s.confirm.notDeleted(a.PublicKey, jti(a.JWT), servers); len(pending) > 0 && !slices.ContainsFunc(pending, func(srv Server) bool { return srv.Up }) {
		// Every server that has not carried out the DELETE is down: sent
		// again, it reached only servers that carried it out already.
		// The server that returns is forgotten (Run) and gets the
		// disabled version and the DELETE then.
		return PhaseDisabled, names(pending)
	}
	res, err := s.deleteFromResolver(ctx, a.PublicKey)
	s.confirm.deleted(a.PublicKey, jti(a.JWT), res)
	switch {
	case deletesRefused(err):
		// allow_delete is off: the disabled version is the end state,
		// once every server still confirms it. One that restarted from
		// an old disk while the DELETE was out was forgotten (Run): taken
		// as confirmed from before it, the delete was final while it
		// held the account live.
		if waiting := s.confirm.missing(a.PublicKey, jti(a.JWT), servers); len(waiting) > 0 {
			return PhaseDisabled, waiting
		}
		log.Info("servers do not allow deletes; the account stays disabled on them")
	case err != nil:
		log.Warn("DELETE failed; the reconciler retries", "error", err)
		// The servers still waited for are those that did not carry it
		// out, as below: named all, the reply listed servers that
		// deleted the account and cache resolvers, which nothing waits
		// for.
		fallthrough
	default:
		// A reply counts only as noted (deleted): by the instance that
		// confirmed the disabled version, not forgotten since. Read by
		// the server's name alone, the reply of an instance that then
		// restarted from an old disk (Run forgetting it before the
		// replies came back) made the delete final while the new
		// instance held the account live.
		notDone := s.confirm.notDeleted(a.PublicKey, jti(a.JWT), servers)
		var waiting []string
		for _, srv := range servers {
			if srv.Cache {
				// A cache resolver is not waited for, for the DELETE
				// either: it stores nothing pushed, and one down (a leaf
				// or edge server offline) kept the delete disabled, its
				// DELETE sent by every pass, until server_forget_after.
				continue
			}
			if slices.ContainsFunc(notDone, func(n Server) bool { return n.Name == srv.Name }) ||
				!slices.ContainsFunc(res, func(r ServerReply) bool { return r.Server == srv.Name && r.Stored }) {
				waiting = append(waiting, srv.Name)
			}
		}
		if len(waiting) > 0 || err != nil {
			return PhaseDisabled, waiting
		}
	}
	done := a
	done.Phase = PhaseDeleted
	// The retention counts from now: a delete that waited for a server
	// until server_forget_after finishes without it, and only the
	// tombstone deletes the account again when it comes back. Counted
	// from when the delete was accepted, a retention of
	// server_forget_after would have passed already.
	done.DeletedAt = time.Now().Unix()
	_, err = s.store.UpdateAccount(ctx, done, a.Revision)
	if errors.Is(err, ErrStale) {
		// Another instance changed the account after it was read: it
		// finished this delete too, or (on a shared store) put the live
		// version back after its own push of the disabled one failed,
		// which the DELETE just took from the servers.
		cur, lerr := s.store.Account(ctx, a.PublicKey)
		switch {
		case lerr == nil && cur.Phase != PhaseDeleted:
			log.Warn("the account changed while its DELETE was sent; pushing the store's version again", "phase", cur.Phase)
			s.afterPush(ctx, a.PublicKey, a.JWT)
			return PhaseDisabled, nil
		case lerr != nil && !errors.Is(lerr, ErrNotFound):
			// Unread (a KV failover), the store may hold the live
			// version put back: taken for a finished delete, the
			// caller was told "deleted" and its confirmations and
			// keys were dropped while the store held it live, off
			// the servers. The reconciler finds what the store holds.
			log.Warn("the account changed while its DELETE was sent and could not be read again; the reconciler finishes or repairs it", "error", lerr)
			return PhaseDisabled, nil
		}
		err = nil
	}
	if err != nil {
		log.Warn("could not record a finished delete; the reconciler retries", "error", err)
		return PhaseDisabled, nil
	}
	s.confirm.drop(a.PublicKey)
	s.forget(a.PublicKey)
	log.Info("account deleted from every known server")
	return PhaseDeleted, nil
}

// sharedNames returns the names of servers that two instances answer
// under (Server.Shared).
func sharedNames(servers []Server) []string {
	var out []string
	for _, srv := range servers {
		if srv.Shared {
			out = append(out, srv.Name)
		}
	}
	return out
}

func names(servers []Server) []string {
	out := make([]string, len(servers))
	for i, s := range servers {
		out[i] = s.Name
	}
	return out
}

// deleteFromResolver sends the DELETE request, a generic JWT whose subject
// and issuer are the operator signing key. It notes whether the servers
// allow deletes (deletesOff).
func (s *Service) deleteFromResolver(ctx context.Context, pub string) (PushResult, error) {
	op := s.operator()
	gc := jwt.NewGenericClaims(op.SignerKey)
	gc.Data["accounts"] = []string{pub}
	token, err := gc.Encode(op.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign delete request: %w", err)
	}
	res, err := s.resolver.Delete(ctx, token)
	switch {
	case deletesRefused(err):
		s.deletesOff.Store(true)
	case res.Stored() > 0:
		s.deletesOff.Store(false)
	}
	return res, err
}

// deletesRefused tells a DELETE refused because the servers do not allow
// deletes (allow_delete false): every server that refused it said so
// (Reasons, one a server). Read as one joined reason, one
// server's "delete must be enabled" beside another's real error (its
// disk), a server that allows deletes and still held the account, made
// the delete final and deletes taken for off.
func deletesRefused(err error) bool {
	var refused *RefusedError
	if !errors.As(err, &refused) {
		return false
	}
	reasons := refused.Reasons
	if len(reasons) == 0 {
		reasons = []string{refused.Reason}
	}
	for _, r := range reasons {
		if !strings.Contains(r, "delete must be enabled") {
			return false
		}
	}
	return true
}

// confirmations record, per account, which version (JWT ID) each server
// confirmed it stored. They live in memory: after a restart the
// reconciler's LOOKUP sweep finds what they would have said.
//
// A confirmation names the server's instance (server ID) that gave it, and
// counts for that instance only: a push's replies are noted after it
// returns, and a server restarted meanwhile (from an old disk) was
// forgotten (Run) before its old instance's "stored" was noted. Kept by
// name alone, that reply counted for the new instance, which had
// confirmed nothing: the DELETE went out, or the tombstone was final
// (allow_delete off), while it held the account live.
type confirmations struct {
	mu sync.Mutex
	m  map[string]map[string]string // account -> server name -> jti "/" server ID
	// gone notes, per disabled account, the servers that confirmed its
	// disabled version (jti) and then carried out its DELETE: they
	// answer a LOOKUP with "", as the delete wants, while it waits for
	// a server that is down.
	gone map[string]map[string]string // account -> server name -> jti "/" server ID
	// cached notes, per account, the cache resolvers (by name, and the
	// instance's server ID) that updated their copy to a version (jti):
	// see staleCache.
	cached map[string]map[string]string // account -> server name -> jti "/" server ID
	// waits notes, per account, the cache resolvers that answered the
	// reconciler's push of a version it lists "jwt update cache skipped"
	// (the account not loaded there): see staleCache.
	waits map[string]map[string]cacheWait // account -> server name -> backoff
}

// cacheWait is the backoff of a version's pushes to a cache resolver
// instance that skipped them.
type cacheWait struct {
	ver   string // jti "/" server ID
	skips int    // pushes of ver it skipped in a row
	next  uint64 // the first pass that pushes ver to it again
}

// maxCacheWait is the most passes a version's push to a cache resolver
// that skipped it waits (with the default reconcile_interval of 30s, 16
// minutes).
const maxCacheWait = 32

// record notes the servers that stored a version.
func (c *confirmations) record(pub, id string, res PushResult) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]string{}
	}
	for _, r := range res {
		if !r.Stored || r.Server == "" {
			continue
		}
		if c.m[pub] == nil {
			c.m[pub] = map[string]string{}
		}
		c.m[pub][r.Server] = id + "/" + r.ServerID
		delete(c.gone[pub], r.Server) // it holds the account again
	}
	for _, r := range res {
		if !r.Cached || r.Server == "" {
			continue
		}
		if c.cached == nil {
			c.cached = map[string]map[string]string{}
		}
		if c.cached[pub] == nil {
			c.cached[pub] = map[string]string{}
		}
		c.cached[pub][r.Server] = id + "/" + r.ServerID
		delete(c.waits[pub], r.Server) // it took the version
	}
}

// staleCache reports whether a push of version id is due to one of the
// cache resolvers among servers that list the account (listers: the names
// whose LIST named it) that has not updated its copy to it in its present
// instance. A cache resolver keeps a
// copy on its disk across a restart and loads it when a user connects, but
// updates it only from a push that comes while the account is loaded ("jwt
// update cache skipped" otherwise): one down during a revoke, or restarted
// since, let the revoked user in for as long as its cache kept the copy
// (its ttl starts again at each restart and each load), and nothing pushed
// to it again. Its copy is unknown (it answers no LOOKUP): the version is
// pushed again until it answers "jwt updated cache".
//
// It answers "skipped" for every account not loaded there, and a server
// never unloads one: after its restart every account it lists (up to its
// cache's limit, 1,000 by default) was pushed again to every server each
// pass, for good. So after a push that it skipped, a version's next push
// to that instance waits 1, 2, 4, ... passes (pass numbers this one), at
// most maxCacheWait (see cacheSkipped); a new version, or a new instance,
// is pushed at once.
func (c *confirmations) staleCache(pub, id string, servers []Server, listers []string, pass uint64) (due bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, srv := range servers {
		ver := id + "/" + srv.ID
		if !srv.Cache || c.cached[pub][srv.Name] == ver {
			// Nothing to push to it: what it waited for is moot.
			delete(c.waits[pub], srv.Name)
			continue
		}
		if !slices.Contains(listers, srv.Name) {
			// Not on its LIST, or its LIST reply came too late (a leaf
			// on a slow link): nothing due, but its wait is kept.
			// Dropped, one late reply made the next pass push every
			// account it lists again at once, the backoff started over.
			continue
		}
		if w, ok := c.waits[pub][srv.Name]; !ok || w.ver != ver || pass >= w.next {
			due = true
		}
	}
	if len(c.waits[pub]) == 0 {
		delete(c.waits, pub)
	}
	return due
}

// cacheSkipped notes the cache resolvers among servers that list the
// account (listers) and did not take version id of a push in pass (res):
// the next push of that version to each waits twice as many passes as the
// last did there (one after the first skip), at most maxCacheWait.
func (c *confirmations) cacheSkipped(pub, id string, res PushResult, servers []Server, listers []string, pass uint64) {
	if id == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range res {
		if !r.Answered || r.Cached || r.Stored || !slices.Contains(listers, r.Server) ||
			!slices.ContainsFunc(servers, func(srv Server) bool { return srv.Cache && srv.Name == r.Server && srv.ID == r.ServerID }) {
			continue
		}
		ver := id + "/" + r.ServerID
		w := c.waits[pub][r.Server]
		if w.ver != ver {
			w = cacheWait{ver: ver}
		}
		w.skips++
		w.next = pass + 1 + uint64(min(1<<min(w.skips-1, 5), maxCacheWait))
		if c.waits == nil {
			c.waits = map[string]map[string]cacheWait{}
		}
		if c.waits[pub] == nil {
			c.waits[pub] = map[string]cacheWait{}
		}
		c.waits[pub][r.Server] = w
	}
}

// remembered returns the accounts anything is noted for.
func (c *confirmations) remembered() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, by := range []map[string]map[string]string{c.m, c.gone, c.cached} {
		for pub := range by {
			out[pub] = true
		}
	}
	for pub := range c.waits {
		out[pub] = true
	}
	return out
}

// remembered returns the accounts the instance holds anything of in
// memory: what the servers confirmed of them, their decoded state (their
// signing keys among it). Both are noted only after the account's store
// write.
func (s *Service) remembered() map[string]bool {
	out := s.confirm.remembered()
	s.cache.Range(func(k, _ any) bool {
		out[k.(string)] = true
		return true
	})
	return out
}

// forgetRemoved forgets all that is held in memory of the accounts the
// store no longer holds (another instance dropped their tombstone). A pass
// of an instance without the reconciler lease reads no accounts, and never
// forgot them (keepWaits): every instance but the leader kept them, their
// signing keys among them, for as long as it ran. Noted only after its
// store write, an account the store does not hold is not one being
// created.
func (s *Service) forgetRemoved(ctx context.Context) {
	for pub := range s.remembered() {
		if _, err := s.store.Account(ctx, pub); errors.Is(err, ErrNotFound) {
			s.confirm.drop(pub)
			s.forget(pub)
		}
	}
}

// keepWaits forgets the cache resolver backoffs of accounts the store no
// longer holds (known: its accounts) and of servers no longer known, and
// all that is noted of the accounts of before (remembered before known
// was read) that the store no longer holds: removed by another instance
// (a tombstone it dropped) or by a take-back, they were kept for as long
// as the instance ran. An account noted only since known was read (created
// during the pass) is not in before, and keeps its confirmations.
func (c *confirmations) keepWaits(known, before map[string]bool, servers []Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pub := range before {
		if !known[pub] {
			delete(c.m, pub)
			delete(c.gone, pub)
			delete(c.cached, pub)
		}
	}
	for pub, m := range c.waits {
		if !known[pub] {
			delete(c.waits, pub)
			continue
		}
		for name := range m {
			if !slices.ContainsFunc(servers, func(srv Server) bool { return srv.Name == name }) {
				delete(m, name)
			}
		}
		if len(m) == 0 {
			delete(c.waits, pub)
		}
	}
}

// deleted notes the servers that carried out the DELETE of an account
// after confirming its disabled version id.
func (c *confirmations) deleted(pub, id string, res PushResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range res {
		if !r.Stored || r.Server == "" || id == "" || !confirmedBy(c.m[pub][r.Server], id, r.ServerID) {
			continue
		}
		if c.gone == nil {
			c.gone = map[string]map[string]string{}
		}
		if c.gone[pub] == nil {
			c.gone[pub] = map[string]string{}
		}
		c.gone[pub][r.Server] = id + "/" + r.ServerID
	}
}

// notDeleted returns the servers (full resolvers) that have not carried out
// the DELETE of an account since confirming its disabled version id.
func (c *confirmations) notDeleted(pub, id string, servers []Server) []Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Server
	for _, srv := range servers {
		if !srv.Cache && (id == "" || !confirmedBy(c.gone[pub][srv.Name], id, srv.ID)) {
			out = append(out, srv)
		}
	}
	return out
}

// set notes that the given servers hold version id.
func (c *confirmations) set(pub, id string, servers []Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]map[string]string{}
	}
	if c.m[pub] == nil {
		c.m[pub] = map[string]string{}
	}
	for _, srv := range servers {
		c.m[pub][srv.Name] = id + "/" + srv.ID
		delete(c.gone[pub], srv.Name)
	}
}

// missing returns the known servers that have not confirmed version id.
// A server with a cache resolver is never waited for: it stores no pushed
// version (it answers "jwt update cache skipped", or updates a copy it
// happens to hold) and fetches the account from the full resolvers when it
// needs it, so it would keep a delete disabled, and the reconciler pushing,
// for ever.
func (c *confirmations) missing(pub, id string, servers []Server) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, srv := range servers {
		if srv.Cache {
			continue
		}
		if id == "" || !confirmedBy(c.m[pub][srv.Name], id, srv.ID) {
			out = append(out, srv.Name)
		}
	}
	return out
}

// confirmedBy reports whether a noted confirmation (jti "/" server ID)
// is of version id by the server instance serverID. One whose instance is
// unknown, on either side, is taken by its version alone.
func confirmedBy(noted, id, serverID string) bool {
	ver, inst, _ := strings.Cut(noted, "/")
	return ver == id && (inst == "" || serverID == "" || inst == serverID)
}

// known reports whether anything is recorded for the account.
func (c *confirmations) known(pub string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m[pub]) > 0
}

// drop forgets an account.
func (c *confirmations) drop(pub string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, pub)
	delete(c.gone, pub)
	delete(c.cached, pub)
	delete(c.waits, pub)
}

// forgetServer forgets what a server confirmed: it restarted, possibly from
// an old disk, or is back after missing a ping. What a cache resolver took
// and what its pushes wait for (cached, waits) name its instance (server
// ID): only another instance's are forgotten, a new instance's pushes being
// due at once anyway. The same instance back (a leaf whose link flapped)
// has the cache it had: forgotten, every account it lists was pushed again
// at once, and each flap started its backoff over.
func (c *confirmations) forgetServer(name, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.m {
		delete(m, name)
	}
	for _, m := range c.gone {
		delete(m, name)
	}
	for _, m := range c.cached {
		if v, ok := m[name]; ok && (id == "" || !strings.HasSuffix(v, "/"+id)) {
			delete(m, name)
		}
	}
	for _, m := range c.waits {
		if w, ok := m[name]; ok && (id == "" || !strings.HasSuffix(w.ver, "/"+id)) {
			delete(m, name)
		}
	}
}

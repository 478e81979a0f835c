package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
)

// errAccountNotFound is returned, matching provision.ErrNotFound, for an
// account the store does not show.
func errAccountNotFound(what string) error {
	return fmt.Errorf("kvstore: account %s: %w", what, provision.ErrNotFound)
}

// entryErr is why an account entry cannot be read: its seal key's
// (provision.ErrOtherSealKey), or provision.ErrUnreadable for a record
// damaged or written by a newer provisioner, which was a bare error and a
// 500 "internal error" to the caller. nil for a readable entry.
func entryErr(e *accountEntry) error {
	if e.err == nil || errors.Is(e.err, provision.ErrOtherSealKey) {
		return e.err
	}
	return fmt.Errorf("%w: %w", provision.ErrUnreadable, e.err)
}

// copyAccount returns the account of an entry, for a caller to keep.
func copyAccount(e *accountEntry) (provision.Account, error) {
	if err := entryErr(e); err != nil {
		return provision.Account{}, err
	}
	a := e.a
	a.SigningKeys = slices.Clone(e.a.SigningKeys)
	return a, nil
}

// Account returns the account, live or tombstone, with public key pub. An
// account the mirror does not hold yet (written by another instance a
// moment ago) is read from the bucket.
func (s *Store) Account(ctx context.Context, pub string) (provision.Account, error) {
	s.mu.RLock()
	if err := s.checkOpen(); err != nil {
		s.mu.RUnlock()
		return provision.Account{}, err
	}
	e := s.m.accounts[pub]
	ok := e != nil && s.m.visible(e)
	s.mu.RUnlock()
	if ok {
		return copyAccount(e)
	}
	if err := s.fetchAccount(ctx, pub); err != nil {
		return provision.Account{}, err
	}
	s.mu.RLock()
	e = s.m.accounts[pub]
	ok = e != nil && s.m.visible(e)
	s.mu.RUnlock()
	if !ok {
		return provision.Account{}, errAccountNotFound(pub)
	}
	return copyAccount(e)
}

// AccountByName returns the live account with the given name.
func (s *Store) AccountByName(ctx context.Context, name string) (provision.Account, error) {
	find := func() (*accountEntry, error) {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if err := s.checkOpen(); err != nil {
			return nil, err
		}
		n, ok := s.m.names[name]
		if !ok {
			return nil, nil
		}
		e := s.m.accounts[n.pub]
		if e == nil || !e.a.Live() && e.err == nil {
			return nil, nil
		}
		return e, nil
	}
	e, err := find()
	if err != nil {
		return provision.Account{}, err
	}
	if e == nil {
		if err := s.fetchName(ctx, name); err != nil {
			return provision.Account{}, err
		}
		if e, err = find(); err != nil {
			return provision.Account{}, err
		}
	}
	if e == nil {
		return provision.Account{}, errAccountNotFound(fmt.Sprintf("named %q", name))
	}
	return copyAccount(e)
}

// Accounts returns every account, tombstones included, sorted by name and
// then public key, as the mirror holds them. The records that cannot be
// read are left out and named by a *provision.UnreadableError returned
// with the others: one damaged record failed every list and reconcile
// pass, on every instance.
func (s *Store) Accounts(ctx context.Context) ([]provision.Account, error) {
	s.mu.Lock()
	if err := s.checkOpen(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	sorted := s.m.sortedAccounts()
	s.mu.Unlock()
	out := make([]provision.Account, 0, len(sorted))
	var unread []string
	var errs []error
	for _, e := range sorted {
		a, err := copyAccount(e)
		if err != nil {
			unread = append(unread, e.a.PublicKey)
			errs = append(errs, err)
			continue
		}
		out = append(out, a)
	}
	if len(unread) > 0 {
		return out, &provision.UnreadableError{Accounts: unread, Err: errors.Join(errs...)}
	}
	return out, nil
}

// AccountLatest reads an account from the bucket itself, past the mirror,
// which may lag another instance's write by a few milliseconds: what a
// change must be based on after ErrStale, and what a push is checked
// against when another instance may have moved the account on.
func (s *Store) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	if err := s.open(); err != nil {
		return provision.Account{}, err
	}
	if err := s.fetchAccount(ctx, pub); err != nil {
		return provision.Account{}, err
	}
	return s.Account(ctx, pub)
}

// SealedByOlderKeys returns, sorted, the public keys of the accounts whose
// record in the bucket holds a seed that the current seal key did not
// seal: what must be written again before the previous seal keys can go.
// It reads the bucket itself, past the mirror, which may lag a write just
// made by another instance, and that instance may still seal with a key
// this store holds only as a previous one. It fails with
// provision.ErrUnavailable when JetStream does not answer, and names the
// key of a record that is not an account record.
func (s *Store) SealedByOlderKeys(ctx context.Context) ([]string, error) {
	err := s.open()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.kv.WatchFiltered(wctx, []string{accountPrefix + ">"}, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, mapErr("watch account records", err)
	}
	defer w.Stop()
	var out []string
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
		case <-ctx.Done():
			return nil, mapErr("read account records", ctx.Err())
		}
		if !ok {
			return nil, mapErr("read account records", errors.New("watcher closed"))
		}
		if e == nil {
			// The watcher marks the end of what the bucket held with nil.
			break
		}
		var rec accountRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("kvstore: %s: not an account record: %w", e.Key(), err)
		}
		older := rec.IdentitySeed != "" && !s.seal.Current(rec.IdentitySeed)
		for _, sk := range rec.SigningKeys {
			older = older || !s.seal.Current(sk.Seed)
		}
		if older {
			out = append(out, e.Key()[len(accountPrefix):])
		}
	}
	slices.Sort(out)
	return out, nil
}

// LatestJWT reads the JWT of an account's latest record from the bucket
// itself, past the mirror: what a push is checked against when another
// instance may have moved the account on; ErrNotFound for a record the
// store does not show. One read (two for a revive's) and no unsealing, where
// AccountLatest reads the name entry too and opens the seeds: after every
// push that made account.create cost half a millisecond more.
func (s *Store) LatestJWT(ctx context.Context, pub string) (string, error) {
	if err := s.open(); err != nil {
		return "", err
	}
	if !validAccountKey(pub) {
		return "", errAccountNotFound(pub)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+accountKey(pub))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return "", errAccountNotFound(pub)
	case err != nil:
		return "", mapErr("read account "+pub, err)
	case rawEntry{m: m}.Operation() != jetstream.KeyValuePut:
		return "", errAccountNotFound(pub)
	}
	var rec struct {
		JWT     string          `json:"jwt"`
		Name    string          `json:"name"`
		Phase   provision.Phase `json:"phase"`
		Revived *revivedRecord  `json:"revived"`
	}
	if err := json.Unmarshal(m.Data, &rec); err != nil || rec.JWT == "" {
		return "", fmt.Errorf("kvstore: %s: not an account record", accountKey(pub))
	}
	// A live record is shown only while its name entry points to it
	// (mirror.visible). The one such record a push can be checked against
	// is a revive's (a create that loses its name fails before any push):
	// one that lost its name and could not write the tombstone back is
	// hidden until the next open writes it back. Returned here, afterPush
	// pushed that hidden live version, and it stayed on the servers as an
	// orphan the reconciler never takes back. Only a revive's record costs
	// the read of its name entry.
	if rec.Revived != nil && phase(provision.Account{Phase: rec.Phase}) == provision.PhaseLive {
		e, err := s.kv.Get(ctx, nameKey(rec.Name))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return "", errAccountNotFound(pub)
		case err != nil:
			return "", mapErr(fmt.Sprintf("read name %q", rec.Name), err)
		case string(e.Value()) != pub:
			return "", errAccountNotFound(pub)
		}
	}
	return rec.JWT, nil
}

// fetchAccount reads an account record, and the name entry of a live one,
// from the bucket into the mirror.
func (s *Store) fetchAccount(ctx context.Context, pub string) error {
	if !validAccountKey(pub) {
		return errAccountNotFound(pub)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	c, ok, err := s.readAccount(ctx, pub)
	if err != nil || !ok {
		return err
	}
	if !c.del && c.acct.err == nil && c.acct.a.Live() {
		if err := s.fetchName(ctx, c.acct.a.Name); err != nil {
			return err
		}
	}
	s.applyBrought(c, false)
	return nil
}

// readAccount reads the last entry of an account's key: its record, or the
// delete marker of a removed account, which must reach the mirror too (a
// lagging mirror would show the account still). ok is false for a key
// never written.
func (s *Store) readAccount(ctx context.Context, pub string) (change, bool, error) {
	key := accountKey(pub)
	m, err := s.stream.GetLastMsgForSubject(ctx, s.subject+key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return change{}, false, nil
	}
	if err != nil {
		return change{}, false, mapErr("read account "+pub, err)
	}
	return s.decode(rawEntry{m: m, key: key}), true, nil
}

// refresh reads an account record into the mirror, when an update found
// the mirror behind. A failure is left for the watcher to mend.
func (s *Store) refresh(ctx context.Context, pub string) {
	c, ok, err := s.readAccount(ctx, pub)
	if err != nil || !ok {
		return
	}
	s.applyBrought(c, false)
}

// fetchName reads a name entry, and the record of the account it points
// to, from the bucket into the mirror.
func (s *Store) fetchName(ctx context.Context, name string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	e, err := s.kv.Get(ctx, nameKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return mapErr(fmt.Sprintf("read name %q", name), err)
	}
	c := s.decode(e)
	var ac *change
	if c.err == nil {
		ae, err := s.kv.Get(ctx, accountKey(c.pub))
		switch {
		case err == nil:
			d := s.decode(ae)
			ac = &d
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return mapErr("read account "+c.pub, err)
		}
	}
	s.mu.Lock()
	// The record of the account named first: misnamed checks the entry
	// against it.
	applied := ac != nil && s.m.apply(*ac)
	if c.err == nil {
		c.err = s.m.misnamed(c)
	}
	damaged := c.err != nil && s.m.noteDamaged(c)
	if c.err == nil {
		s.m.apply(c)
	}
	s.mu.Unlock()
	if applied {
		s.logUnreadable(*ac)
	}
	if damaged {
		s.logDamaged(c)
	}
	if c.err != nil {
		// Damage (a write by hand): bare, the decode error was a 500
		// "internal error" that told the caller nothing and nobody how
		// to repair it. Answered as a create of the name is (claimName),
		// without quoting the value (decode).
		return fmt.Errorf("kvstore: account name %q: %w: its name entry %s is damaged (%w); repair it with the key of the account it names, or remove it", name, provision.ErrConflict, e.Key(), c.err)
	}
	return nil
}

// CreateAccount stores a new live account and returns its revision. It
// fails with ErrConflict when a live account has the name or any record
// has the public key, and with ErrInvalid for an account that is not live
// or whose keys do not hold together.
//
// It claims the name (creating its entry, or taking over one whose account
// is missing or not live), then writes the record at a key never written
// before, and is done: two writes. A take-over of a name whose account has
// no record first voids that record's key (a delete marker expected at
// revision 0, claimName), so a create that claimed the name, paused, and
// lost it meanwhile cannot write its record there. When the key was written
// before (voided, or the key of an account removed before, which Migrate
// can bring back), the create takes the slow way: it creates the record
// over the marker, then writes the name entry again at the revision it
// claimed it with (the fence). When that finds the entry changed, someone
// took the name over in between: the record is removed again and the
// create fails with ErrConflict. Measured on one server that syncs every
// write, the fence's third write cost account.create a sixth of its
// throughput.
func (s *Store) CreateAccount(ctx context.Context, a provision.Account) (uint64, error) {
	if err := validAccount(a); err != nil {
		return 0, err
	}
	if !a.Live() {
		return 0, invalid("account %s: a new account must be live, not %s", a.PublicKey, a.Phase)
	}
	a.Phase = provision.PhaseLive
	rev, err := s.createAccount(ctx, a)
	s.noteWrite(err)
	return rev, err
}

// createAccount stores a new account, live or tombstone (Migrate copies
// tombstones), claiming the name of a live one.
func (s *Store) createAccount(ctx context.Context, a provision.Account) (uint64, error) {
	s.mu.RLock()
	err := s.checkOpen()
	_, exists := s.m.accounts[a.PublicKey]
	taken := ""
	if n, ok := s.m.names[a.Name]; ok && a.Live() && n.pub != a.PublicKey {
		if h := s.m.accounts[n.pub]; h != nil && h.a.Live() {
			taken = n.pub
		}
	}
	s.mu.RUnlock()
	switch {
	case err != nil:
		return 0, err
	case exists:
		return 0, fmt.Errorf("kvstore: account %s: %w: the public key has a record", a.PublicKey, provision.ErrConflict)
	case taken != "":
		return 0, fmt.Errorf("kvstore: account name %q: %w: account %s has it", a.Name, provision.ErrConflict, taken)
	}
	data, sealed, err := s.sealAccount(a, nil, nil)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()

	var claimRev uint64
	if a.Live() {
		if claimRev, err = s.claimName(ctx, a.Name, a.PublicKey); err != nil {
			return 0, err
		}
		if err := s.at("create: name claimed"); err != nil {
			return 0, err
		}
		var rev uint64
		err := untilSettled(ctx, "create account "+a.PublicKey, func() (err error) {
			rev, err = s.kv.Update(ctx, accountKey(a.PublicKey), data, 0)
			return err
		})
		switch {
		case errors.Is(err, provision.ErrUnavailable):
			return 0, err
		case err == nil:
			if err := s.at("create: record written"); err != nil {
				return 0, err
			}
			s.created(a, sealed, claimRev, rev)
			return rev, nil
		case !errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			return 0, mapErr("create account "+a.PublicKey, err)
		}
		// The key was written before: the slow way, fenced.
	}
	rev, err := createSettled(ctx, s.kv, accountKey(a.PublicKey), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("kvstore: account %s: %w: the public key has a record", a.PublicKey, provision.ErrConflict)
	}
	if err != nil {
		return 0, mapErr("create account "+a.PublicKey, err)
	}
	if err := s.at("create: record written"); err != nil {
		return 0, err
	}
	var nameRev uint64
	if a.Live() {
		nameRev, err = s.kv.Update(ctx, nameKey(a.Name), []byte(a.PublicKey), claimRev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Taken over between the claim and the record: the record is
			// not shown (its name entry points elsewhere); remove it,
			// voided: the bucket never held it live (store migrate).
			if derr := s.voidAt(ctx, accountKey(a.PublicKey), rev, "create lost its name"); derr != nil {
				s.log.Warn("kvstore: cannot remove the record of a create that lost its name; the next open removes it", "account", a.PublicKey, "error", derr)
			}
			return 0, fmt.Errorf("kvstore: account name %q: %w: taken by another create meanwhile", a.Name, provision.ErrConflict)
		}
		if err != nil {
			return 0, mapErr("confirm name of account "+a.PublicKey, err)
		}
	}
	s.created(a, sealed, nameRev, rev)
	return rev, nil
}

// created applies a created account to the mirror: its name entry at
// nameRev (a live one), its record at rev.
func (s *Store) created(a provision.Account, sealed map[provision.Seed]string, nameRev, rev uint64) {
	a.Revision = 0
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Live() {
		s.m.apply(change{key: nameKey(a.Name), rev: nameRev, name: a.Name, pub: a.PublicKey})
	}
	s.m.apply(change{key: accountKey(a.PublicKey), rev: rev, acct: &accountEntry{a: a, sealed: sealed}})
}

// claimName makes the name entry point to pub and returns its revision. A
// name entry is free when the account it points to is missing or not
// live; it is then taken over at its revision. One that holds no account
// key is damage, never taken over: the claim fails with ErrConflict.
func (s *Store) claimName(ctx context.Context, name, pub string) (uint64, error) {
	key := nameKey(name)
	for attempt := 0; attempt < 8; attempt++ {
		rev, err := createSettled(ctx, s.kv, key, []byte(pub))
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, mapErr(fmt.Sprintf("claim name %q", name), err)
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return 0, mapErr(fmt.Sprintf("read name %q", name), err)
		}
		holder := string(e.Value())
		if holder == pub {
			return e.Revision(), nil
		}
		if !validAccountKey(holder) {
			// Damage (a write by hand), which hides the account whose
			// name it was: taken over, that account's record would be a
			// create's that lost its name, which the next open voids,
			// seeds and all. The value is not quoted (decode).
			return 0, fmt.Errorf("kvstore: account name %q: %w: its name entry %s holds no account public key (damage); repair it with the key of the account it names, or remove it", name, provision.ErrConflict, key)
		}
		free, err := s.holderGone(ctx, holder)
		if err != nil {
			return 0, err
		}
		if !free {
			return 0, fmt.Errorf("kvstore: account name %q: %w: account %s has it", name, provision.ErrConflict, holder)
		}
		rev, err = s.kv.Update(ctx, key, []byte(pub), e.Revision())
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, mapErr(fmt.Sprintf("take over name %q", name), err)
		}
	}
	return 0, fmt.Errorf("kvstore: account name %q: %w: it keeps changing hands", name, provision.ErrConflict)
}

// holderGone reports whether the account a name entry points to lets the
// name go: it has no record, or one that is not live. A missing record is
// a create that crashed after its claim, or one still under way: its
// record's key is voided first, so that such a create cannot write its
// record without the fence (createAccount).
func (s *Store) holderGone(ctx context.Context, holder string) (bool, error) {
	key := accountKey(holder)
	ae, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// A 10164 answer (the holder's record write still under way) says
		// nothing of the key: only 10071 says it holds something.
		verr := untilSettled(ctx, "void the record of account "+holder, func() error {
			m := deleteMarker(s.subject + key)
			m.Header.Set(voidedHeader, "name taken over")
			_, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(0))
			return err
		})
		if verr == nil {
			return true, s.at("claim: holder's record voided")
		}
		var apiErr *jetstream.APIError
		switch {
		case errors.Is(verr, provision.ErrUnavailable):
			return false, verr // untilSettled said what was being done
		case !errors.As(verr, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence:
			return false, mapErr("void the record of account "+holder, verr)
		}
		// The key holds something: a delete marker (the account was
		// removed, or its key voided by an earlier take-over), which no
		// create passes without the fence, or a record written meanwhile.
		ae, err = s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return true, nil
		}
	}
	if err != nil {
		return false, mapErr("read account "+holder, err)
	}
	live, derr := liveOf(ae.Value())
	return derr == nil && !live, nil
}

// UpdateAccount replaces the account whose current revision is rev and
// returns the new revision. It fails with ErrStale when the record changed
// since rev, ErrNotFound when there is none, and ErrInvalid for a new
// name. A tombstone made live again (a delete put back after its push
// failed) claims its name first, as a create does, and fails with
// ErrConflict when a live account took it meanwhile.
func (s *Store) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	nrev, err := s.updateAccount(ctx, a, rev)
	s.noteWrite(err)
	return nrev, err
}

func (s *Store) updateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if err := validAccount(a); err != nil {
		return 0, err
	}
	s.mu.RLock()
	err := s.checkOpen()
	cur := s.m.accounts[a.PublicKey]
	if cur != nil && !s.m.visible(cur) {
		cur = nil
	}
	s.mu.RUnlock()
	switch {
	case err != nil:
		return 0, err
	case cur == nil:
		return 0, errAccountNotFound(a.PublicKey)
	case cur.err != nil:
		return 0, entryErr(cur)
	case cur.a.Name != a.Name:
		return 0, invalid("account %s: the name cannot change (%q to %q)", a.PublicKey, cur.a.Name, a.Name)
	case cur.a.Revision > rev:
		return 0, fmt.Errorf("kvstore: account %s: %w (revision %d, now %d)", a.PublicKey, provision.ErrStale, rev, cur.a.Revision)
	}
	a.Phase = phase(a)
	revive := !cur.a.Live() && a.Live()
	var revived *revivedRecord
	if revive {
		revived = &revivedRecord{Phase: cur.a.Phase, DeletedAt: cur.a.DeletedAt, JWT: cur.a.JWT}
	}
	data, sealed, err := s.sealAccount(a, cur, revived)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var claimRev uint64
	if revive {
		if claimRev, err = s.claimName(ctx, a.Name, a.PublicKey); err != nil {
			return 0, err
		}
		if err := s.at("revive: name claimed"); err != nil {
			return 0, err
		}
	}
	// While an earlier write of the key is in process on a replicated
	// stream the leader refuses the update (10164), which nats.go reports
	// as a revision mismatch: that says nothing of rev (the leader answers
	// a write before it clears it, so an update sent at once at the
	// revision just acknowledged meets it), so it is sent again once the
	// earlier write is settled.
	var nrev uint64
	err = untilSettled(ctx, "update account "+a.PublicKey, func() (err error) {
		nrev, err = s.kv.Update(ctx, accountKey(a.PublicKey), data, rev)
		return err
	})
	if errors.Is(err, provision.ErrUnavailable) {
		return 0, err // untilSettled said what was being done
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// The mirror is behind (the watcher is late, or an earlier write
		// whose answer was lost was stored after all): read the record
		// now, so that the caller's next read is current.
		s.refresh(ctx, a.PublicKey)
		return 0, fmt.Errorf("kvstore: account %s: %w (revision %d)", a.PublicKey, provision.ErrStale, rev)
	}
	if err != nil {
		return 0, mapErr("update account "+a.PublicKey, err)
	}
	var nameRev uint64
	if revive {
		// Fence the name as a create does: whoever took it over between
		// the claim and the record wins, and the record goes back.
		nameRev, err = s.kv.Update(ctx, nameKey(a.Name), []byte(a.PublicKey), claimRev)
		if err != nil {
			if ferr := s.at("revive: fenced out"); ferr != nil {
				return 0, ferr
			}
			if uerr := s.putBack(ctx, cur, nrev); uerr != nil {
				s.log.Warn("kvstore: cannot put back the tombstone of an account whose name was taken; it is hidden until the next open writes it back", "account", a.PublicKey, "error", uerr)
			}
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return 0, fmt.Errorf("kvstore: account name %q: %w: taken meanwhile", a.Name, provision.ErrConflict)
			}
			return 0, mapErr("confirm name of account "+a.PublicKey, err)
		}
	}
	a.Revision = 0
	s.mu.Lock()
	if revive {
		s.m.apply(change{key: nameKey(a.Name), rev: nameRev, name: a.Name, pub: a.PublicKey})
	}
	s.m.apply(change{key: accountKey(a.PublicKey), rev: nrev, acct: &accountEntry{a: a, sealed: sealed}})
	s.mu.Unlock()
	return nrev, nil
}

// putBack writes cur, the tombstone a revive replaced, back over the
// revive's record at rev, the revision the revive was just given.
func (s *Store) putBack(ctx context.Context, cur *accountEntry, rev uint64) error {
	data, _, err := s.sealAccount(cur.a, cur, nil)
	if err != nil {
		return err
	}
	// The revive's record write can still be in process on the leader of
	// a replicated stream (it answers a write before it clears it, and
	// the name's refusal in between is no write that orders after it):
	// its refusal (10164), which nats.go reports as a revision mismatch,
	// says nothing of rev, so the tombstone is sent again once that write
	// is settled.
	return untilSettled(ctx, "put back the tombstone of account "+cur.a.PublicKey, func() error {
		_, err := s.kv.Update(ctx, accountKey(cur.a.PublicKey), data, rev)
		return err
	})
}

// RemoveAccount forgets an account and its user records: the record first
// (at revision rev), then its users and its name entry. The record's
// conditional delete is the one step that can find the account changed by
// another instance, and a remove that fails with ErrStale must have changed
// nothing: removing the users first left an account that had changed
// between the remove's read and that delete without its users. A crash
// after the record leaves user records of an account that is gone; every
// store's watcher brings the record's removal and its stray loop removes
// them (strays.go), and so does the next open's sweep.
func (s *Store) RemoveAccount(ctx context.Context, pub string, rev uint64) error {
	s.mu.RLock()
	err := s.checkOpen()
	cur := s.m.accounts[pub]
	var users []string
	var name nameEntry
	if cur != nil {
		if au := s.m.byAcct[pub]; au != nil {
			for _, u := range au.list {
				if !u.gone {
					users = append(users, u.u.PublicKey)
				}
			}
		}
		name = s.m.names[cur.a.Name]
	}
	s.mu.RUnlock()
	switch {
	case err != nil:
		return err
	case cur == nil:
		return errAccountNotFound(pub)
	case cur.a.Revision > rev:
		return fmt.Errorf("kvstore: account %s: %w (revision %d, now %d)", pub, provision.ErrStale, rev, cur.a.Revision)
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.at("remove: record read"); err != nil {
		return err
	}
	// A user record still on its way (queued for a batch, or waiting to be
	// tried again) would land after its delete marker and outlive the
	// account: wait until each is stored or given up.
	if err := s.settle(ctx, users); err != nil {
		return err
	}
	// A delete sent while an earlier write of the record is in process on
	// a replicated stream is refused (10164), which nats.go reports as a
	// revision mismatch though it says nothing of rev (a remove sent at
	// once at the revision just acknowledged meets it): it is sent again
	// once that write is settled, as updates are.
	err = untilSettled(ctx, "remove account "+pub, func() error {
		return s.kv.Delete(ctx, accountKey(pub), jetstream.LastRevision(rev))
	})
	if errors.Is(err, provision.ErrUnavailable) {
		return err // untilSettled said what was being done
	}
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		// The mirror lags behind another instance's change, or the
		// account changed meanwhile: read the record now, so that the
		// caller's next read is current.
		s.refresh(ctx, pub)
		return fmt.Errorf("kvstore: account %s: %w (revision %d)", pub, provision.ErrStale, rev)
	}
	if err != nil {
		return mapErr("remove account "+pub, err)
	}
	if err := s.at("remove: account removed"); err != nil {
		return err
	}
	if err := s.deleteUsers(ctx, users); err != nil {
		return err
	}
	if name.pub == pub {
		// Best effort: a name entry pointing to a missing account is free
		// anyway. The record's delete was stored after this instance's
		// last write of the name entry, which the leader had cleared by
		// then: a refusal here (10164 too) is of a write of the entry made
		// meanwhile, which leaves it at another revision, so the delete is
		// not sent again.
		if err := s.kv.Delete(ctx, nameKey(cur.a.Name), jetstream.LastRevision(name.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			s.log.Warn("kvstore: cannot remove the name entry of a removed account", "account", pub, "error", err)
		}
	}
	// The watcher brings the delete markers' revisions; until then the
	// account is gone from this mirror at once.
	s.mu.Lock()
	if e := s.m.accounts[pub]; e == cur {
		delete(s.m.accounts, pub)
		s.m.sorted = nil
	}
	for _, u := range users {
		s.m.dropUser(u)
	}
	empty := s.m.emptyPacks()
	s.mu.Unlock()
	// The account is gone; a pack that cannot be removed now holds only
	// users shown nowhere, and the next store to open removes it.
	if err := s.at("remove: packs to remove"); err != nil {
		return err
	}
	s.removePacks(ctx, empty)
	return nil
}

// settle waits until no write of these users' records is pending.
func (s *Store) settle(ctx context.Context, users []string) error {
	var fullSince time.Time
	for {
		s.amu.Lock()
		n := 0
		for _, u := range users {
			if _, ok := s.pending[userKey(u)]; ok {
				n++
			}
		}
		s.amu.Unlock()
		if n == 0 {
			return nil
		}
		if !s.full.Load() {
			fullSince = time.Time{}
		} else if fullSince.IsZero() {
			fullSince = time.Now()
		} else if time.Since(fullSince) > time.Second {
			// They wait for room an operator must make.
			return fmt.Errorf("kvstore: remove users: %w: %d of their records wait for room in the bucket", provision.ErrFull, n)
		}
		select {
		case <-ctx.Done():
			return mapErr(fmt.Sprintf("remove users: %d records are still being written", n), ctx.Err())
		case <-s.stop:
			return errClosedStore
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// deleteUsers removes user records, many at a time.
func (s *Store) deleteUsers(ctx context.Context, users []string) error {
	const window = 256
	for len(users) > 0 {
		n := min(window, len(users))
		futures := make([]jetstream.PubAckFuture, 0, n)
		for _, u := range users[:n] {
			f, err := s.bulkJS.PublishMsgAsync(deleteMarker(s.subject + userKey(u)))
			if err != nil {
				return mapErr("remove user "+u, err)
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return mapErr("remove user "+users[i], err)
			case <-ctx.Done():
				return mapErr("remove users", ctx.Err())
			}
		}
		users = users[n:]
	}
	return nil
}

func validAccountKey(pub string) bool { return nkeys.IsValidPublicAccountKey(pub) }

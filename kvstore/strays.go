package kvstore

import (
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Stray user records: a record of a user of an account that was removed,
// stored after the removal. RemoveAccount waits for this store's own
// pending records of the account's users, but another instance may still
// have one on its way (its mirror had not seen the removal when it added
// the user): it lands after the removal's delete markers, or between the
// users' markers and the account's. Open's sweep removes such a record,
// but only at the next open, which may be weeks away; meanwhile user.get
// finds a user of an account that does not exist. So every store removes
// the strays its watcher brings, as they arrive. Each removal expects the
// revision it saw, so instances doing the same, or a record that changed
// meanwhile, cannot make it remove the wrong thing.
//
// The mirror's view is not proof: a watcher that resumed after an outage,
// or the watchdog reading the stream, skips entries replaced since, such
// as the first revision of an account record created over a delete marker
// (a voided key, or a removed account that Migrate brought back). So the
// account's record is read from the bucket before its users are removed,
// and they are left alone when it is there.

// stray is a user record to remove, at the revision it was seen at (0: a
// user shown from a pack, whose user. key was never written).
type stray struct {
	key     string
	rev     uint64
	account string
}

// straysAfter returns the user records that applying c, an entry the
// watcher brought, leaves without an account. The caller holds s.mu and
// has applied c.
//
// Only entries that arrive in the bucket's order count: a user record
// arriving for an account the mirror has never held may be one whose
// account record was since replaced by a later revision (a resumed
// watcher skips replaced entries), so a record is stray only when the
// mirror saw its account removed.
func (m *mirror) straysAfter(c change) []stray {
	switch {
	case c.del && strings.HasPrefix(c.key, accountPrefix):
		// Users the removal did not know of, stored before its marker.
		au := m.byAcct[c.key[len(accountPrefix):]]
		if au == nil {
			return nil
		}
		var out []stray
		for _, e := range au.list {
			if rev := m.revs[userKey(e.u.PublicKey)]; !e.gone && !e.pending && (rev > 0 || e.pack != "") {
				out = append(out, stray{userKey(e.u.PublicKey), rev, e.u.Account})
			}
		}
		return out
	case c.user != nil && !c.del:
		acct := c.user.Account
		if m.accounts[acct] == nil && m.revs[accountKey(acct)] > 0 {
			return []stray{{c.key, c.rev, acct}}
		}
	case c.pack != nil && !c.del:
		var out []stray
		for _, u := range c.pack {
			e := m.users[u.PublicKey]
			if e != nil && e.pack == c.key && m.accounts[u.Account] == nil && m.revs[accountKey(u.Account)] > 0 {
				out = append(out, stray{userKey(u.PublicKey), 0, u.Account})
			}
		}
		return out
	}
	return nil
}

// removeStrays hands strays to the stray loop; the watcher must not wait
// for the bucket.
func (s *Store) removeStrays(strays []stray) {
	if len(strays) == 0 {
		return
	}
	s.smu.Lock()
	s.strays = append(s.strays, strays...)
	s.smu.Unlock()
	select {
	case s.straySig <- struct{}{}:
	default:
	}
}

// strayLoop removes strays until the store closes. What it has not removed
// by then, or could not, the next open's sweep removes.
func (s *Store) strayLoop() {
	defer s.workers.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.straySig:
		}
		s.smu.Lock()
		todo := s.strays
		s.strays = nil
		s.smu.Unlock()
		// account -> its record is not in the bucket; a failed read counts
		// as there, so that an unreachable bucket costs one timeout per
		// account, not per record.
		gone := map[string]bool{}
		// unpacked are the users shown from packs this round removed.
		var unpacked []string
		for _, st := range todo {
			select {
			case <-s.stop:
				return // the next open's sweep finds the rest
			default:
			}
			if s.open() != nil {
				return // lost, for good: the bucket may be another now
			}
			ctx, cancel := s.ctx(s.life)
			if !s.accountGone(ctx, st.account, gone) {
				cancel()
				continue // the account is there: the mirror missed its record
			}
			err := s.deleteAt(ctx, st.key, st.rev)
			cancel()
			switch {
			case err == nil:
				s.log.Info("kvstore: removed the record of a user whose account was removed before it was stored", "key", st.key)
				if st.rev == 0 {
					unpacked = append(unpacked, st.key[len(userPrefix):])
				}
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
				// Removed by another instance, or changed: not ours to remove.
			default:
				s.log.Warn("kvstore: cannot remove the record of a user whose account was removed; the next open removes it", "key", st.key, "error", err)
			}
		}
		// A pack of strays only would otherwise stay until the next open:
		// the instance that removed them removes the packs they emptied,
		// as RemoveAccount does.
		if len(unpacked) > 0 {
			s.mu.Lock()
			for _, pub := range unpacked {
				if e := s.m.users[pub]; e != nil && e.pack != "" {
					s.m.dropUser(pub)
				}
			}
			empty := s.m.emptyPacks()
			s.mu.Unlock()
			s.removePacks(s.life, empty)
		}
	}
}

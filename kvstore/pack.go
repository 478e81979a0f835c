package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/provision"
)

// Packs of user records. A user record written on its own costs the
// servers a whole JetStream write and a delivery to every instance's
// watcher, which on a small machine is as much CPU as the user.create's
// own signing (bench: user.create at 0.49-0.68 of its floor with a message
// per record, 0.81 without the record). So the records of users whose keys
// this service made, which are written in the background anyway, go many
// to one message: a upack.<id> key, written once and never changed.
//
// Such a key needs no create-only-if-absent of its own: the service made
// it a moment ago, so no other record of it can exist. Everything that
// changes a user later writes its user.<key>, which takes precedence over
// any pack (mirror.applyPack): a removal writes a delete marker there, as
// for a record of its own. A pack none of whose users is shown any more
// is removed by the instance that removed the last of them, or by the next
// open's sweep. Records that must be durable before the reply (a caller's
// key, durable_user_records, a full bucket) keep a key each, which their
// create-only-if-absent needs.
//
// A pack that is not stored, or whose answer is lost, is written again
// record by record on the retry path. If it was stored after all, those
// users have a record of their own as well; it takes precedence and says
// the same.

// maxPackBytes bounds the encoded size of one pack, under the servers'
// max_payload.
const maxPackBytes = 256 << 10

// packable reports whether a pending write can go in a pack: a record in
// the background of a key never written.
func packable(p *pendingWrite) bool {
	return p.done == nil && p.entry != nil && p.expected == 0
}

// writePacks writes records in as few packs as their size allows.
func (s *Store) writePacks(writes []*pendingWrite) {
	limit := min(maxPackBytes, int(s.nc.MaxPayload())-4096)
	for len(writes) > 0 {
		if s.stopped() {
			return // Close gave up on them: they stay unconfirmed
		}
		n, size := 0, 0
		for n < len(writes) && (n == 0 || size+len(writes[n].data) < limit) {
			size += len(writes[n].data) + 1
			n++
		}
		s.writePack(writes[:n])
		writes = writes[n:]
	}
}

// writePack writes records as one pack. It applies the pack to the mirror
// before it stops counting the records as pending, so that a removal that
// waits for them (settle) finds them shown from the pack.
func (s *Store) writePack(writes []*pendingWrite) {
	users := make([]provision.User, len(writes))
	for i, p := range writes {
		users[i] = p.entry.u
	}
	data, err := json.Marshal(packRecord{Users: users})
	if err != nil {
		s.retryLater(writes, err)
		return
	}
	key := packPrefix + nuid.Next()
	ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
	defer cancel()
	var rev uint64
	if hook := s.packHook.Load(); hook != nil {
		err = (*hook)(key)
	}
	seen := s.seenRev()
	if err == nil {
		s.writing.Store(key, users)
		rev, err = s.kv.Create(ctx, key, data)
		s.writing.Delete(key)
	}
	if err != nil {
		s.retryLater(writes, err)
		return
	}
	if s.replacedUnder(key, rev, seen) {
		// Its records stay unconfirmed, as a retry's (storedInOpened),
		// and Close names them.
		s.removeElsewhere(key, rev)
		return
	}
	s.noteWrite(nil)
	s.mu.Lock()
	c := change{key: key, rev: rev, pack: users}
	var strays []stray
	if s.m.apply(c) {
		// Users whose account the mirror saw removed while their records
		// were pending (confirm says how that happens).
		strays = s.m.straysAfter(c)
	}
	twice := s.m.takeTwice()
	s.mu.Unlock()
	s.logTwice(twice)
	s.removeStrays(strays)
	s.amu.Lock()
	for _, p := range writes {
		if s.pending[p.key] == p {
			delete(s.pending, p.key)
		}
	}
	s.amu.Unlock()
}

// deleteAt writes a delete marker at key, expecting its last revision to
// be rev; 0 expects a key never written (kv.Delete takes 0 as "any").
func (s *Store) deleteAt(ctx context.Context, key string, rev uint64) error {
	return s.markAt(ctx, key, rev, "")
}

// voidAt removes, as deleteAt does, the record at key of an account whose
// create lost its name to another account (never shown): its marker
// carries voidedHeader, saying why, so that store migrate does not report
// the account as one the bucket removed.
func (s *Store) voidAt(ctx context.Context, key string, rev uint64, why string) error {
	return s.markAt(ctx, key, rev, why)
}

// markAt writes deleteAt's marker, with voidedHeader set to voided unless
// it is "".
func (s *Store) markAt(ctx context.Context, key string, rev uint64, voided string) error {
	return untilSettled(ctx, "remove "+key, func() error {
		m := deleteMarker(s.subject + key)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
		if voided != "" {
			m.Header.Set(voidedHeader, voided)
		}
		_, err := s.js.PublishMsg(ctx, m)
		if wrongLast(err) {
			return fmt.Errorf("%w: %w", err, jetstream.ErrKeyRevisionMismatch)
		}
		return err
	})
}

// wrongLast reports a conditional write refused because the key's last
// revision is not the one expected.
func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// readPacks applies the packs, and removals of packs, stored after the
// last entry the watcher delivered: a read that finds no record of a user
// at its user. key, and a durable add about to create one, must not miss
// a user stored in a pack the watcher has not brought yet (its lag, or a
// stalled watcher). One request when there is none.
func (s *Store) readPacks(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	s.mu.RLock()
	seq := max(s.m.watched, s.m.packsRead) + 1
	s.mu.RUnlock()
	for {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.subject+packPrefix+">"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		s.applyBrought(s.decode(rawEntry{m: m, key: strings.TrimPrefix(m.Subject, s.subject)}), false)
		s.packsReadTo(m.Sequence)
		seq = m.Sequence + 1
	}
}

// packsReadTo records that every pack entry up to rev has been applied.
func (s *Store) packsReadTo(rev uint64) {
	s.mu.Lock()
	s.m.packsRead = max(s.m.packsRead, rev)
	s.mu.Unlock()
}

// removePacks removes packs none of whose users are shown any more, each
// at the revision seen. Failures are logged; the next open's sweep tries
// again.
func (s *Store) removePacks(ctx context.Context, packs map[string]uint64) {
	for key, rev := range packs {
		cctx, cancel := s.ctx(ctx)
		err := s.kv.Delete(cctx, key, jetstream.LastRevision(rev))
		cancel()
		if err != nil && !wrongLast(err) {
			s.log.Warn("kvstore: cannot remove a pack of user records that holds no user any more; the next open removes it", "key", key, "error", err)
		}
	}
}

// takeTwice returns and forgets the users the mirror dropped for another
// record of their key.
func (m *mirror) takeTwice() []provision.User {
	t := m.twice
	m.twice = nil
	return t
}

// logTwice logs users dropped because their key was issued twice.
func (s *Store) logTwice(users []provision.User) {
	for _, u := range users {
		s.log.Error("kvstore: user key was issued twice; keeping the record stored first, the other is dropped", "key", userKey(u.PublicKey), "dropped_account", u.Account, "dropped_name", u.Name)
	}
}

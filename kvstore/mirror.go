package kvstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// mirror is the store's in-memory copy of the acct., name., user. and
// upack. keys of the bucket, with the indexes reads need. Every change
// carries the KV revision it was written at and applies only when it is
// newer than what the mirror holds for that key, so that the store's own
// writes (applied when acknowledged) and the watcher's copies of them
// (applied when they arrive) can come in either order. The Store's mu
// guards it.
type mirror struct {
	// revs is the revision last applied per key, deletes included, so that
	// an older put arriving late cannot bring a deleted key back.
	revs     map[string]uint64
	accounts map[string]*accountEntry // account public key -> record
	names    map[string]nameEntry     // account name -> its holder
	users    map[string]*userEntry    // user public key -> record
	byAcct   map[string]*accountUsers // account public key -> its users
	packs    map[string]*packEntry    // upack. key -> what of it is shown
	// damaged holds, for Damage, the keys whose last entry cannot be read
	// for another cause than its seal key, with that entry's revision: an
	// account record the mirror holds with its error, or another entry it
	// skipped (noteDamaged).
	damaged map[string]uint64
	// sorted holds the visible accounts by name then public key; nil when
	// an account or name changed since it was made.
	sorted []*accountEntry
	// watched is the last revision the watcher delivered; a new watcher
	// resumes after it.
	watched uint64
	// top is the entry of the highest revision applied, whoever brought
	// it (this store's own writes included, which can be past watched):
	// the watchdog checks that the stream still holds it there.
	top revRef
	// packsRead is the last revision up to which every pack entry was
	// applied by a read of the stream (readPacks, the watchdog's catch-up)
	// rather than by the watcher. While the watcher is stalled, as after a
	// failover, each durable add reads the packs after max(watched,
	// packsRead) only: counting from watched alone, every add read again
	// every pack stored since the stall, a round trip each, and after a few
	// seconds of packs no add finished within its timeout.
	packsRead uint64
	// twice collects the users dropped because another record of their
	// key won (a key issued twice), for the store to log.
	twice []provision.User
}

func newMirror() *mirror {
	return &mirror{
		revs:     map[string]uint64{},
		accounts: map[string]*accountEntry{},
		names:    map[string]nameEntry{},
		users:    map[string]*userEntry{},
		byAcct:   map[string]*accountUsers{},
		packs:    map[string]*packEntry{},
		damaged:  map[string]uint64{},
	}
}

// packEntry is a pack of user records (pack.go) the mirror holds.
type packEntry struct {
	rev uint64
	// members are the users the pack showed when it was applied; live
	// counts those still shown from it. A pack with none live holds
	// nothing the mirror shows, and can go.
	members []string
	live    int
}

// accountEntry is an account record with its seeds opened.
type accountEntry struct {
	a provision.Account // Revision is set
	// sealed maps each seed to the sealed form read or written, so that a
	// write that keeps a seed need not seal it again.
	sealed map[provision.Seed]string
	// err is why the record could not be read; reads of the account fail
	// with it.
	err error
	// lockedName is, for a live record (not a revive's) whose seeds are
	// sealed with a key this instance lacks, the name it holds in clear:
	// enough to tell a create that lost its name (never shown, swept) from
	// an account the store shows, whose record Open refuses.
	lockedName string
	// revived is the tombstone a revive replaced (record.go), as read.
	revived *revivedRecord
}

// revRef is an entry of the bucket: its key at a revision, and the time
// the stream stored it, zero until known (a store's own write, until its
// watcher brings it back).
type revRef struct {
	rev uint64
	key string
	// at tells the entry from another value of the same key at the same
	// revision: a bucket put back from a backup and written again by
	// another instance, that instance updating the same record from the
	// same revision.
	at time.Time
}

type nameEntry struct {
	pub string
	rev uint64
}

type userEntry struct {
	u provision.User
	// pending is set while the record's asynchronous write is not
	// acknowledged.
	pending bool
	// gone is set once the record left the indexes; the account's list
	// drops it at its next compaction.
	gone bool
	// pack is the upack. key the record is shown from, "" for a record
	// of its own (a user. key), which always takes precedence.
	pack string
}

// accountUsers are the users of one account in issue order: the order the
// mirror learned of them, which is the bucket's order for everything
// loaded at Open and written by other instances, and call order for this
// store's own writes.
type accountUsers struct {
	list   []*userEntry
	byName map[string][]*userEntry
	gone   int
}

// change is one decoded KV entry.
type change struct {
	key  string
	rev  uint64
	del  bool
	acct *accountEntry
	name string // of a name. key
	pub  string // the holder, for a name. key
	user *provision.User
	pack []provision.User // of a upack. key
	// skip marks a key the mirror does not hold (a lease): it only
	// advances the watched revision.
	skip bool
	err  error
	// at is when the stream stored the entry; zero for a store's own
	// write.
	at time.Time
}

// visible reports whether an account record is shown: a live record only
// when its name entry points to it. A live record its name entry does not
// point to is a create that lost a race for the name, or crashed before
// backing out.
func (m *mirror) visible(e *accountEntry) bool {
	if e.err != nil {
		// Sealed with a key since dropped, a create that lost its name
		// blocked every Open (its record cannot be read), though no
		// request can see it: its name in clear tells it apart.
		return e.lockedName == "" || m.names[e.lockedName].pub == e.a.PublicKey
	}
	if !e.a.Live() {
		return true
	}
	return m.names[e.a.Name].pub == e.a.PublicKey
}

// apply applies a change unless the mirror holds a newer revision of its
// key. It reports whether it applied.
func (m *mirror) apply(c change) bool {
	if c.rev > m.top.rev && (c.skip || c.rev > m.revs[c.key]) {
		// A lease too: a bucket put back that lost only leases (a quiet
		// deployment's leader renewing its own) and was written past
		// them ends no earlier than the revision seen, and the watcher,
		// resumed after it, skips what was written there meanwhile.
		m.top = revRef{rev: c.rev, key: c.key, at: c.at}
	}
	if c.skip || c.rev <= m.revs[c.key] {
		return false
	}
	m.revs[c.key] = c.rev
	if c.rev > m.damaged[c.key] {
		delete(m.damaged, c.key)
	}
	switch {
	case strings.HasPrefix(c.key, accountPrefix):
		pub := c.key[len(accountPrefix):]
		if c.del {
			delete(m.accounts, pub)
		} else {
			c.acct.a.Revision = c.rev
			m.accounts[pub] = c.acct
			if c.acct.err != nil && !errors.Is(c.acct.err, provision.ErrOtherSealKey) {
				m.damaged[c.key] = c.rev
			}
		}
		m.sorted = nil
	case strings.HasPrefix(c.key, namePrefix):
		if c.del {
			delete(m.names, c.name)
		} else {
			m.names[c.name] = nameEntry{pub: c.pub, rev: c.rev}
		}
		m.sorted = nil
	case strings.HasPrefix(c.key, userPrefix):
		pub := c.key[len(userPrefix):]
		if c.del {
			m.dropUser(pub)
		} else {
			if old := m.users[pub]; old != nil {
				m.unpack(old) // the record of its own takes precedence
				if !old.u.Equal(*c.user) && !revokedFirst(*c.user, old.u) {
					m.twice = append(m.twice, old.u)
				}
			}
			m.putUser(*c.user, false)
		}
	case strings.HasPrefix(c.key, packPrefix):
		if c.del {
			m.dropPack(c.key)
		} else {
			m.applyPack(c.key, c.rev, c.pack)
		}
	}
	return true
}

// noteDamaged records for Damage an entry that cannot be read (c.err),
// which the mirror skips: it keeps what it held of the key, if anything,
// and an entry of the key written later, put back whole or a delete,
// applies and clears it. It reports whether the entry is news, to be
// logged: a read and the watcher can bring the same entry.
func (m *mirror) noteDamaged(c change) bool {
	if c.rev <= m.revs[c.key] || c.rev <= m.damaged[c.key] {
		return false
	}
	if c.del {
		// A delete of a key this version cannot read (a name key
		// that is not base64url): nothing is left there.
		delete(m.damaged, c.key)
		return false
	}
	m.damaged[c.key] = c.rev
	return true
}

// unknownPacks returns, sorted, the damaged upack. keys whose users the
// mirror does not know: none of their entries was read whole here. A pack
// read whole before its damage is still known (its users are shown as
// before), so a key it did not hold is in no pack.
func (m *mirror) unknownPacks() []string {
	var keys []string
	for key := range m.damaged {
		if strings.HasPrefix(key, packPrefix) && m.packs[key] == nil {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// misnamed returns why c, a name entry that holds an account key, is
// damage all the same: the account it names has a record of another name.
// No write of the store makes one (an account's name never changes), so it
// is a write by hand; applied, it answered that account, seeds and all,
// for reads of the name, and hid the account whose name it was. nil
// otherwise, also for an account the mirror has no readable record of (a
// create writes its name entry before its record).
func (m *mirror) misnamed(c change) error {
	if c.err != nil || c.del || !strings.HasPrefix(c.key, namePrefix) {
		return nil
	}
	if h := m.accounts[c.pub]; h != nil && h.err == nil && h.a.Name != c.name {
		return fmt.Errorf("kvstore: %s: not the name entry of the account it names, whose record holds another name", c.key)
	}
	return nil
}

// applyPack shows the users of a pack, but none whose user. key was ever
// written: a delete marker there is the user's removal (RemoveAccount, a
// stray's or the sweep's), and a record there is the user's own, which
// takes precedence (a pack whose answer was lost, written again record by
// record). A user this store added and is waiting for is confirmed.
//
// Keys in packs are made by the service and never meet; should one be in
// two packs with different records, the pack stored first wins in every
// mirror, whichever order they arrive in, and the loser goes to twice.
func (m *mirror) applyPack(key string, rev uint64, users []provision.User) {
	p := &packEntry{rev: rev}
	m.packs[key] = p
	for _, u := range users {
		if m.revs[userKey(u.PublicKey)] > 0 {
			continue
		}
		e := m.users[u.PublicKey]
		switch {
		case e == nil:
			e = m.putUser(u, false)
		case e.u.Equal(u) && e.pack == "":
			e.pending = false
		case !e.u.Equal(u) && (e.pack == "" || m.packs[e.pack].rev > rev):
			// This store's record still on its way, or one from a pack
			// stored later: this one was first.
			m.twice = append(m.twice, e.u)
			m.dropUser(u.PublicKey)
			e = m.putUser(u, false)
		default:
			if !e.u.Equal(u) {
				m.twice = append(m.twice, u)
			}
			continue
		}
		e.pack = key
		p.members = append(p.members, u.PublicKey)
		p.live++
	}
}

// dropPack forgets a removed pack and the users still shown from it.
func (m *mirror) dropPack(key string) {
	p := m.packs[key]
	if p == nil {
		return
	}
	for _, pub := range p.members {
		if e := m.users[pub]; e != nil && e.pack == key {
			m.dropUser(pub)
		}
	}
	delete(m.packs, key)
}

// unpack stops counting a user as shown from its pack.
func (m *mirror) unpack(e *userEntry) {
	if e.pack == "" {
		return
	}
	if p := m.packs[e.pack]; p != nil {
		p.live--
	}
	e.pack = ""
}

// emptyPacks returns the packs none of whose users are shown any more,
// with their revisions.
func (m *mirror) emptyPacks() map[string]uint64 {
	out := map[string]uint64{}
	for key, p := range m.packs {
		if p.live <= 0 {
			out[key] = p.rev
		}
	}
	return out
}

// putUser makes u the record of its key. A record equal to the one held
// keeps its place in the issue order (the watcher bringing back this
// store's own write).
func (m *mirror) putUser(u provision.User, pending bool) *userEntry {
	if old := m.users[u.PublicKey]; old != nil {
		if old.u.Equal(u) {
			old.pending = old.pending && pending
			return old
		}
		m.dropUser(u.PublicKey)
	}
	e := &userEntry{u: u, pending: pending}
	m.users[u.PublicKey] = e
	au := m.byAcct[u.Account]
	if au == nil {
		au = &accountUsers{byName: map[string][]*userEntry{}}
		m.byAcct[u.Account] = au
	}
	au.list = append(au.list, e)
	au.byName[u.Name] = append(au.byName[u.Name], e)
	return e
}

func (m *mirror) dropUser(pub string) {
	e := m.users[pub]
	if e == nil {
		return
	}
	delete(m.users, pub)
	m.unpack(e)
	e.gone = true
	au := m.byAcct[e.u.Account]
	if au == nil {
		return
	}
	named := slices.DeleteFunc(au.byName[e.u.Name], func(x *userEntry) bool { return x == e })
	if len(named) == 0 {
		delete(au.byName, e.u.Name)
	} else {
		au.byName[e.u.Name] = named
	}
	au.gone++
	if au.gone == len(au.list) {
		delete(m.byAcct, e.u.Account)
	} else if au.gone > len(au.list)/2 {
		au.list = slices.DeleteFunc(au.list, func(x *userEntry) bool { return x.gone })
		au.gone = 0
	}
}

// decode turns a KV entry into a change, opening an account's seeds. A
// record that cannot be read becomes an account entry holding the error,
// or, for a user or name key, a change with err set.
func (s *Store) decode(e jetstream.KeyValueEntry) change {
	c := change{key: e.Key(), rev: e.Revision(), del: e.Operation() != jetstream.KeyValuePut, at: e.Created()}
	switch {
	case strings.HasPrefix(c.key, accountPrefix):
		if !c.del {
			acct, err := openAccount(s.seal, c.key, e.Value())
			if err != nil {
				acct = &accountEntry{a: provision.Account{PublicKey: c.key[len(accountPrefix):]}, err: err}
				if errors.Is(err, seal.ErrUnknownKey) {
					acct.lockedName = lockedName(e.Value())
					// Not a 500: the request's answer says why (the
					// error holds public keys only).
					acct.err = fmt.Errorf("%w: %w", provision.ErrOtherSealKey, err)
					var uk *seal.UnknownKeyError
					if errors.As(err, &uk) && s.loaded.Load() {
						// Open refuses such a record the store shows,
						// and sweeps one it does not: met after it, it
						// was written by an instance running now:
						// given another seal_key, or not restarted
						// since a rotation this one dropped the key
						// of (foreignWhy).
						s.noteForeign(uk.Key, c.key)
					}
				}
			}
			c.acct = acct
		}
	case strings.HasPrefix(c.key, namePrefix):
		c.name, c.err = nameOfKey(c.key)
		c.pub = string(e.Value())
		if c.err == nil && !c.del && !validAccountKey(c.pub) {
			// Damage (a write by hand): applied, it hid the account it
			// named, and the next open's sweep removed that account's
			// record as a create's that lost its name. The value is
			// not quoted: it could be anything pasted there.
			c.err = fmt.Errorf("kvstore: %s: not a name entry: it holds no account public key (%d bytes)", c.key, len(c.pub))
		}
	case strings.HasPrefix(c.key, userPrefix):
		if !c.del {
			u, err := decodeUser(c.key, e.Value())
			c.user, c.err = &u, err
		}
	case strings.HasPrefix(c.key, packPrefix):
		if c.del {
			break
		}
		if users, ok := s.writing.Load(c.key); ok {
			// This store's own pack, on its way back before its write
			// returned: it was made from these records.
			c.pack = users.([]provision.User)
			break
		}
		c.pack, c.err = decodePack(c.key, e.Value())
	case strings.HasPrefix(c.key, leasePrefix):
		c.skip = true
	default:
		c.err = fmt.Errorf("kvstore: unexpected key %s", c.key)
	}
	return c
}

// kvWatch is a running watcher and the cancel that ends it.
type kvWatch struct {
	w      jetstream.KeyWatcher
	cancel context.CancelFunc
}

// startWatcher starts a watcher of the bucket. The jetstream package ties
// the watcher's subscription to the context it is created with, and ends
// it (unsubscribing, then deleting the consumer, which can take seconds
// when the meta leader is gone) in a goroutine of its own when that
// context ends. So the context lasts until the watcher is stopped or the
// store closes; ctx bounds only the request that creates the watcher.
func (s *Store) startWatcher(ctx context.Context, opts ...jetstream.WatchOpt) (*kvWatch, error) {
	wctx, cancel := context.WithCancel(s.life)
	detach := context.AfterFunc(ctx, cancel)
	// Leases are watched too, though not kept, so that the last revision
	// watched can be compared with the stream's last sequence.
	w, err := s.kv.WatchAll(wctx, opts...)
	kw := &kvWatch{w: w, cancel: cancel}
	if !detach() {
		// ctx ended during the call, which cancelled the request.
		if err == nil {
			kw.stop()
		}
		return nil, context.Cause(ctx)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	return kw, nil
}

// stop ends the watcher and drains what it still delivers, so that the
// subscription's callback, which blocks on a full channel, can end.
func (kw *kvWatch) stop() {
	kw.cancel()
	timeout := time.After(time.Second)
	for {
		select {
		case _, ok := <-kw.w.Updates():
			if !ok {
				return
			}
		case <-timeout:
			return
		}
	}
}

// load starts the watcher and fills the mirror with the bucket's current
// content, opening the seeds on every core. It fails when any account
// record cannot be read: a wrong seal key must stop the service, not
// hide accounts.
func (s *Store) load(ctx context.Context) (*kvWatch, error) {
	kw, err := s.startWatcher(ctx)
	if watchTierless(err) {
		// The watcher is an ephemeral consumer of one replica, in the
		// R1 tier whatever the bucket's replicas, which the server
		// selects from the account's limits as they are now: no retry
		// or restart adds the tier, and the server's words name none.
		return nil, fmt.Errorf("kvstore: watch bucket: %w: the account's JWT has JetStream limits per tier but none for R1, which the bucket's watcher (a consumer of one replica) needs whatever the bucket's replicas; add it (`nsc edit account <service account> --js-tier 1 --js-disk-storage 4G --js-mem-storage 256M`, then push it): %w", ErrNoJetStream, err)
	}
	if err != nil {
		return nil, mapErr("watch bucket", err)
	}
	entries, err := s.loadEntries(ctx, kw)
	if err != nil {
		kw.stop()
		return nil, err
	}
	changes := make([]change, len(entries))
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				changes[i] = s.decode(entries[i])
			}
		})
	}
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()

	m := newMirror()
	var broken []error
	for _, c := range changes {
		// Every entry delivered counts as watched, an unreadable one
		// too (as in follow): the watchdog would take a watcher behind
		// the stream's last entry, with nothing left to bring, for stuck.
		m.watched = max(m.watched, c.rev)
		if c.err == nil {
			// In revision order: the record of the account named is in.
			c.err = m.misnamed(c)
		}
		if c.err != nil {
			if m.noteDamaged(c) {
				s.logDamaged(c)
			}
			continue
		}
		m.apply(c)
	}
	// Once every record is in: a name entry comes before the record of
	// the account it names when that record was written again since it
	// (an update, a rotation), so misnamed above, seeing no record yet,
	// let one rewritten by hand with another account's key through, and a
	// read by its name answered that account, seeds and all.
	for name, n := range m.names {
		c := change{key: nameKey(name), rev: n.rev, name: name, pub: n.pub}
		if c.err = m.misnamed(c); c.err == nil {
			continue
		}
		// As if skipped above: what a later entry of the key finds.
		delete(m.names, name)
		delete(m.revs, c.key)
		m.sorted = nil
		if m.noteDamaged(c) {
			s.logDamaged(c)
		}
	}
	// Once every name entry is in: a record the store does not show (a
	// create that lost its name, sealed with a key since dropped) refuses
	// no start; the sweep removes it.
	for _, c := range changes {
		if c.acct != nil && c.acct.err != nil && m.accounts[c.key[len(accountPrefix):]] == c.acct && m.visible(c.acct) {
			broken = append(broken, c.acct.err)
		}
	}
	s.logTwice(m.takeTwice())
	if len(broken) > 0 {
		kw.stop()
		return nil, fmt.Errorf("kvstore: %d account records cannot be read (first: %w); a seal key rotated away must be given as a previous key", len(broken), broken[0])
	}
	s.m = m
	return kw, nil
}

// loadRounds bounds the reads of the stream's head in loadEntries.
const loadRounds = 10

// loadEntries returns the entries the watcher delivers until the mirror
// made of them holds every key of the bucket. The watcher's end of its
// initial values (the nil entry) is no proof: the jetstream package sends
// it once as many entries were delivered as were pending when it started,
// entries written since counted, so a key rewritten meanwhile (another
// instance's revoke, update or renewal), whose message ahead of the
// watcher was removed, came after it with its new revision: Open returned
// with users and accounts missing. So the watcher is read on up to the
// stream's last message, read after it, until every revision in between
// came (no message of it was removed before the watcher got to it, so no
// key moved past the head); a stream whose head keeps moving that way is
// given up on after loadRounds reads, or once the store's Timeout has
// passed since the initial values, its last keys left to the watcher.
func (s *Store) loadEntries(ctx context.Context, kw *kvWatch) ([]jetstream.KeyValueEntry, error) {
	var entries []jetstream.KeyValueEntry
	// next returns the watcher's next entry, or nil, nil when none came
	// within idle (none: no limit).
	next := func(idle <-chan time.Time) (jetstream.KeyValueEntry, error) {
		select {
		case e, ok := <-kw.w.Updates():
			if !ok {
				return nil, mapErr("load bucket", fmt.Errorf("watcher closed"))
			}
			return e, nil
		case <-idle:
			return nil, nil
		case <-ctx.Done():
			return nil, mapErr("load bucket", ctx.Err())
		}
	}
	for {
		e, err := next(nil)
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		entries = append(entries, e)
	}
	var got uint64 // the last revision delivered
	if len(entries) > 0 {
		got = entries[len(entries)-1].Revision()
	}
	// What is still missing comes with the watcher a moment later: a
	// bucket written faster than the load goes is not waited for longer
	// than a request.
	budget := time.NewTimer(s.opts.Timeout)
	defer budget.Stop()
	for round := 0; ; round++ {
		info, err := s.stream.Info(ctx)
		if err != nil {
			return nil, mapErr("load bucket: stream info", err)
		}
		head := info.State.LastSeq
		if got >= head || info.State.Msgs == 0 {
			return entries, nil
		}
		if round == loadRounds {
			s.log.Info("kvstore: the bucket's keys kept being rewritten while it was loaded; those rewritten last are shown once the watcher brings them", "watched", got, "last", head)
			return entries, nil
		}
		whole := true
		for got < head {
			// Bounded too for a message at the head removed by hand
			// (`nats stream rmm`), which never comes.
			e, err := next(budget.C)
			if err != nil {
				return nil, err
			}
			if e == nil {
				s.log.Info("kvstore: the bucket was written faster than it was loaded; the keys written last are shown once the watcher brings them", "watched", got, "last", head)
				return entries, nil
			}
			if e.Revision() != got+1 {
				// The messages between were removed before the
				// watcher got to them: their keys were written again
				// past head, maybe.
				whole = false
			}
			got = e.Revision()
			entries = append(entries, e)
		}
		if whole {
			return entries, nil
		}
	}
}

// watch applies the watcher's updates until the store closes, and starts
// a new watcher, resuming after the last revision seen, when the old one
// ends (the ordered consumer gave up, for instance after a long outage),
// unless the bucket was lost.
func (s *Store) watch(kw *kvWatch) {
	defer s.watcher.Done()
	for {
		s.follow(kw.w)
		kw.stop()
		select {
		case <-s.stop:
			return
		default:
		}
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			s.mu.RLock()
			from, lost := s.m.watched+1, s.lost
			s.mu.RUnlock()
			if lost != nil {
				// The bucket was deleted or replaced (lose): the store
				// answers nothing more, so nothing a watcher brings is
				// of use, and a deleted one's restarts fail for good.
				return
			}
			ctx, cancel := context.WithTimeout(s.life, s.opts.Timeout)
			nw, err := s.startWatcher(ctx, jetstream.ResumeFromRevision(from))
			if err == nil {
				// Made on the stream this instance opened only if that
				// one is still there once it is made: a bucket deleted
				// and made again since the watchdog's last look took the
				// restart onto the new stream, whose entries (revisions
				// of another bucket) went into the mirror and were acted
				// on (a name entry written back there) before lose.
				if err = s.sameStream(ctx); err != nil {
					nw.stop()
				}
			}
			cancel()
			if err == nil {
				s.log.Info("kvstore: watcher restarted", "from_revision", from)
				kw = nw
				s.restarting.Store(false)
				break
			}
			s.log.Warn("kvstore: cannot restart the watcher; reads may be stale meanwhile", "error", err)
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
		}
	}
}

// sameStream checks that the bucket's stream is the one this instance
// opened, and calls lose when it is another (deleted and made again). A
// stream once deleted never comes back with its creation time, so a
// watcher made before a check that passes is on the stream opened.
func (s *Store) sameStream(ctx context.Context) error {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return err
	}
	if !info.Created.Equal(s.madeAt) {
		s.loseReplaced(info.Created)
		return cmp.Or(s.Broken(), errClosedStore) // nil if closed meanwhile
	}
	return nil
}

// loseReplaced is lose for a bucket whose stream, made at created, is not
// the one this instance opened.
func (s *Store) loseReplaced(created time.Time) {
	s.lose(fmt.Sprintf("deleted and made again (its stream was made at %s, the one this instance opened at %s)", created.UTC().Format(time.RFC3339Nano), s.madeAt.UTC().Format(time.RFC3339Nano)))
}

// follow applies one watcher's updates until it ends, the store closes
// or the watchdog finds it stuck.
func (s *Store) follow(w jetstream.KeyWatcher) {
	for {
		select {
		case <-s.stop:
			return
		case <-s.restartWatch:
			if s.Broken() != nil {
				return // lose woke it: watch ends
			}
			s.log.Warn("kvstore: the watcher is behind the bucket and not moving; restarting it")
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue // end of a resumed watcher's initial values
			}
			s.mu.Lock()
			if s.lost != nil {
				// The bucket was deleted or replaced (lose): what the
				// watcher brings now, which the jetstream package takes
				// from the new bucket's stream once it finds its
				// consumer gone, is not this mirror's to apply or act
				// on (a name entry written back, strays removed there).
				s.mu.Unlock()
				return
			}
			seen := e.Revision() <= s.m.revs[e.Key()]
			if seen {
				// This instance's own write, applied when it was made:
				// opening its seeds again would cost more than the write.
				s.m.watched = max(s.m.watched, e.Revision())
				if t := &s.m.top; t.rev == e.Revision() && t.key == e.Key() && t.at.IsZero() {
					// Applied when acknowledged, which says nothing
					// of when it was stored: now the watchdog can
					// tell it from another value written there.
					t.at = e.Created()
				}
			}
			s.mu.Unlock()
			if seen {
				continue
			}
			s.applyBrought(s.decode(e), true)
		}
	}
}

// SeenThrough waits until the watcher has delivered every entry of the
// bucket up to revision rev, so that reads of users (Users, UsersNamed)
// hold every record stored before it, by any instance. A change that
// checked an account's users here and was stored at rev calls it before
// it checks them again: a user another instance recorded just before the
// change, whose own check read the version before it, was not in this
// mirror at the first check, and is now. It fails with
// provision.ErrUnavailable when ctx ends first (the watcher stalled, as in
// a stream leader's failover; the watchdog's own reads do not count, as
// they bring no order).
func (s *Store) SeenThrough(ctx context.Context, rev uint64) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.RLock()
		err := s.checkOpen()
		watched := s.m.watched
		s.mu.RUnlock()
		switch {
		case err != nil:
			return err
		case watched >= rev:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: kvstore: the bucket's watcher has not delivered revision %d yet (it is at %d): %w", provision.ErrUnavailable, rev, watched, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// revokedFirst tells whether stored, the record a key has, is another
// instance's record of the key as revoked in mine's account, made by a
// revoke by key that found no record of it (mine's still on its way): the
// key was issued once, as mine, and revoked, not issued twice.
func revokedFirst(stored, mine provision.User) bool {
	return stored.Revoked && stored.Account == mine.Account && !mine.Revoked
}

// logUnreadable logs an account record that cannot be read, once the
// mirror has applied it, whoever brought it: the watcher skips an entry
// the mirror holds, so that one the watchdog's catch-up or a read brought
// went in without a word when only the watcher logged it.
func (s *Store) logUnreadable(c change) {
	if c.acct == nil || c.acct.err == nil {
		return
	}
	if errors.Is(c.acct.err, provision.ErrOtherSealKey) {
		// Its seal key is logged at ERROR once (noteForeign), not at
		// each record another instance writes.
		s.log.Warn("kvstore: account record cannot be read; reads of it fail", "key", c.key, "error", c.acct.err)
		return
	}
	s.log.Error("kvstore: account record cannot be read; reads of it fail", "key", c.key, "error", c.acct.err)
}

// logDamaged logs an entry other than an account record that cannot be
// read, once, whoever brought it: the watchdog's catch-up brought one
// without a word, and one a read brought before the watcher was logged
// twice.
func (s *Store) logDamaged(c change) {
	s.log.Error("kvstore: skipping an unreadable entry; prov.status (damage) names it until it is put back whole or removed", "key", c.key, "error", c.err)
}

// applyBrought applies an entry the watcher (or the watchdog) brought,
// moving the watched revision on when watched, and hands the user records
// it leaves without an account to the stray loop.
func (s *Store) applyBrought(c change, watched bool) {
	var strays []stray
	var unnamed *accountEntry
	s.mu.Lock()
	if s.lost != nil {
		// Lost while it was decoded, or read by catchUp: see follow.
		s.mu.Unlock()
		return
	}
	prev, named := s.m.names[c.name]
	var foreign *seal.UnknownKeyError
	if c.err == nil {
		c.err = s.m.misnamed(c)
	}
	applied := c.err == nil && s.m.apply(c)
	damaged := c.err != nil && s.m.noteDamaged(c)
	if applied {
		strays = s.m.straysAfter(c)
		foreign = s.m.shownForeign(c)
		if e := s.m.accounts[prev.pub]; c.del && named && strings.HasPrefix(c.key, namePrefix) && e != nil && e.err == nil && e.a.Live() && e.a.Name == c.name {
			// The name entry of an account shown, removed while its
			// record is there: no removal does that (the record goes
			// first), so it is damage (`nats kv del` by hand), which
			// hides the account and frees its name for another create,
			// whose claim would make the record a lost create's.
			unnamed = e
		}
	}
	if watched {
		s.m.watched = max(s.m.watched, c.rev)
	}
	twice := s.m.takeTwice()
	s.mu.Unlock()
	if applied {
		s.logUnreadable(c)
	}
	if damaged {
		s.logDamaged(c)
	}
	if foreign != nil {
		s.noteForeign(foreign.Key, accountKey(c.pub))
	}
	if unnamed != nil {
		s.nameBackLater(sweepOrphan{key: accountKey(unnamed.a.PublicKey), pub: unnamed.a.PublicKey, name: unnamed.a.Name, removedAt: c.rev})
	}
	s.removeStrays(strays)
	s.logTwice(twice)
}

// shownForeign returns the seal key, unknown to this instance, of the
// account record that c, an applied change, shows by its name entry; nil
// when it shows none such. Such a record decoded before Open ended is not
// noted then (Open refuses it if shown), and hidden at the time (its name
// entry missing, or another account's) it was not noted at all: shown
// now, its reads fail and a restart refuses the bucket, unsaid. The caller
// holds s.mu.
func (m *mirror) shownForeign(c change) *seal.UnknownKeyError {
	if c.del || !strings.HasPrefix(c.key, namePrefix) {
		return nil
	}
	var uk *seal.UnknownKeyError
	if e := m.accounts[c.pub]; e != nil && errors.As(e.err, &uk) && m.visible(e) {
		return uk
	}
	return nil
}

// watchdogInterval is how often the watchdog compares the stream's last
// sequence with the last revision the watcher delivered.
const watchdogInterval = time.Second

// catchUpMax bounds the entries the watchdog reads itself in one round.
const catchUpMax = 2000

// catchUpChunk is how many revisions catchUp reads between two looks that
// the stream is still the one opened (about a second's reads on R3).
const catchUpChunk = 100

// watchdog keeps the mirror current when the watcher falls silent. The
// jetstream package's watcher (an ordered consumer) finds out that its
// consumer is gone, after a stream leader change or the loss of a server,
// only after missing heartbeats for ten seconds or more, and making a new
// one needs the meta leader, which may be the server that was lost. So
// when the watcher is behind the stream and has not moved for a whole
// interval, the watchdog reads the missing entries itself, from the
// stream leader, and asks for a new watcher.
func (s *Store) watchdog() {
	defer s.workers.Done()
	var (
		prevWatched uint64
		prevBehind  bool
		caught      uint64 // the last revision catchUp read
		missing     int    // ticks in a row the stream was not found
		shorter     int    // ticks in a row it ended before the watched revision, or lacked an entry applied
		unreadable  bool   // the last info failed
		// ref is the entry of the highest revision applied as of the
		// last tick whose look found the bucket sound, and held the one
		// of the last tick the stream could not be read (the server
		// down, as while its JetStream directory is put back from a
		// copy): each is checked until a look finds them all there.
		// suspect is the entry the last look did not find.
		ref, held, suspect revRef
	)
	tick := time.NewTicker(watchdogInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		// The watched revision before the info is asked for: what the
		// watcher delivers meanwhile can be past the stream's last
		// sequence as the answer gave it, and under steady writes it was,
		// tick after tick, taken for a bucket put back.
		s.mu.RLock()
		seen, top := s.m.watched, s.m.top
		s.mu.RUnlock()
		ctx, cancel := context.WithTimeout(s.life, watchdogInterval)
		info, err := s.stream.Info(ctx)
		cancel()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			// Said by the meta leader, not a timeout: asked three times
			// so that an answer in a moment of doubt is not taken for it.
			if missing++; missing >= 3 {
				s.lose("deleted")
				return
			}
		} else {
			missing = 0
		}
		if err != nil {
			// Logged once per change, not once a tick: meanwhile what
			// other instances change may not reach this one's reads.
			if !unreadable {
				unreadable = true
				s.log.Warn("kvstore: the watchdog cannot read the bucket's stream; changes other instances make may not be seen here until it answers", "error", err)
				if f := s.opts.StreamUnreadable; f != nil {
					f()
				}
			}
			prevBehind = false // nothing to compare with; the stream may be electing a leader
			held = top
			continue
		}
		if unreadable {
			unreadable = false
			s.log.Info("kvstore: the watchdog reads the bucket's stream again")
		}
		last := info.State.LastSeq
		s.mu.RLock()
		watched := s.m.watched
		s.mu.RUnlock()
		if !info.Created.Equal(s.madeAt) {
			s.loseReplaced(info.Created)
			return
		}
		switch {
		case info.Cluster != nil && info.Cluster.Leader == "" && s.replicas > 1:
			// Without a leader each replica answers with what it has
			// applied itself, which may be behind what the watcher was
			// delivered: no sign of anything.
		case last < seen:
			if shorter++; shorter >= 3 {
				s.lose(fmt.Sprintf("put back to an earlier state (its stream ends at revision %d, before revision %d this instance has seen)", last, seen))
				return
			}
		default:
			// A stream put back keeps its creation time, and once
			// written past the revision seen (another instance started
			// on it) ends after it again: the entries this mirror
			// applied must still be where it applied them.
			missing, err := s.missingEntry(suspect, ref, held, top)
			switch {
			case err != nil:
				// No answer, no sign of anything either way.
			case missing.rev > 0:
				// Looked for again at the next ticks, though the
				// mirror moves on meanwhile (the new stream's entries
				// the watcher brings are where they were applied).
				suspect = missing
				if shorter++; shorter >= 3 {
					s.lose(fmt.Sprintf("put back to an earlier state (its stream no longer holds the entry at revision %d this instance has applied)", missing.rev))
					return
				}
			default:
				shorter = 0
				ref, held, suspect = top, revRef{}, revRef{}
			}
		}
		behind := watched < last
		if behind && prevBehind && watched == prevWatched {
			// The new watcher first: when the meta leader is there it
			// brings the entries far faster than catchUp's reads one by
			// one (about 10 ms each on R3), and catchUp stops where it
			// passes.
			if s.restarting.CompareAndSwap(false, true) {
				select {
				case s.restartWatch <- struct{}{}:
				default:
				}
			}
			caught = s.catchUp(max(watched, caught), last)
		}
		prevBehind, prevWatched = behind, watched
	}
}

// missingEntry returns the first of refs the bucket's stream no longer
// holds: at its revision the stream holds another key's message, or none
// while that key has nothing after it (history 1 removes a value only for
// a later one; the bucket allows no purge). A zero revRef when it holds
// every one.
func (s *Store) missingEntry(refs ...revRef) (revRef, error) {
	for _, r := range refs {
		if r.rev == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(s.life, watchdogInterval)
		held, err := s.holds(ctx, r)
		cancel()
		if err != nil {
			return revRef{}, err
		}
		if !held {
			return r, nil
		}
	}
	return revRef{}, nil
}

// holds reports whether the stream still holds entry r, or a later value
// of its key.
func (s *Store) holds(ctx context.Context, r revRef) (bool, error) {
	m, err := s.stream.GetMsg(ctx, r.rev)
	if err == nil {
		// The key alone is not enough: put back from a backup, the
		// stream can hold, at the same revision, the same key written
		// again with another value.
		return m.Subject == s.subject+r.key && (r.at.IsZero() || m.Time.Equal(r.at)), nil
	}
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, err
	}
	m, err = s.stream.GetLastMsgForSubject(ctx, s.subject+r.key)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return m.Sequence > r.rev, nil
}

// catchUp applies the stream's entries after revision from, up to last,
// read one by one, and returns the last revision it read. It leaves the
// watched revision as it is: the next watcher delivers these entries
// again, and the mirror keeps what is newer.
//
// The entries are read by revision from whatever stream has the bucket's
// name, for up to tens of seconds on R3: each chunk read is applied only
// once the stream is found to be still the one opened (sameStream), so
// that a bucket deleted and made again meanwhile has none of its entries,
// revisions of another bucket, applied and acted on (a name entry written
// back there).
func (s *Store) catchUp(from, last uint64) uint64 {
	type read struct {
		seq uint64
		m   *jetstream.RawStreamMsg // nil: a value since replaced
	}
	n := 0
	seq := from + 1
	for done := false; !done && seq <= last && n < catchUpMax; {
		var chunk []read
		found := 0
		for ; seq <= last && n+found < catchUpMax && len(chunk) < catchUpChunk; seq++ {
			select {
			case <-s.stop:
				done = true
			default:
			}
			if done {
				break
			}
			s.mu.RLock()
			watched := s.m.watched
			s.mu.RUnlock()
			if watched >= last {
				done = true
				break // a new watcher brought them
			}
			seq = max(seq, watched+1)
			if hook := s.catchUpHook.Load(); hook != nil {
				(*hook)(seq)
			}
			ctx, cancel := context.WithTimeout(s.life, watchdogInterval)
			m, err := s.stream.GetMsg(ctx, seq)
			cancel()
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				chunk = append(chunk, read{seq: seq})
				continue
			}
			if err != nil {
				done = true
				break
			}
			chunk = append(chunk, read{seq: seq, m: m})
			found++
		}
		if len(chunk) == 0 {
			break
		}
		ctx, cancel := context.WithTimeout(s.life, watchdogInterval)
		err := s.sameStream(ctx)
		cancel()
		if err != nil {
			// Another stream (lose was called), or no answer: nothing
			// of the chunk is applied; the next round reads it again.
			seq = chunk[0].seq
			break
		}
		for _, r := range chunk {
			if r.m != nil {
				c := s.decode(rawEntry{m: r.m, key: strings.TrimPrefix(r.m.Subject, s.subject)})
				s.applyBrought(c, false)
				n++
			}
			s.packsReadTo(r.seq)
		}
	}
	if n > 0 {
		s.log.Info("kvstore: the watcher is behind; read the entries it missed", "entries", n, "after_revision", from)
	}
	return seq - 1
}

// rawEntry is a stream message read directly, as a KV entry.
type rawEntry struct {
	m   *jetstream.RawStreamMsg
	key string
}

func (e rawEntry) Bucket() string     { return "" }
func (e rawEntry) Key() string        { return e.key }
func (e rawEntry) Value() []byte      { return e.m.Data }
func (e rawEntry) Revision() uint64   { return e.m.Sequence }
func (e rawEntry) Created() time.Time { return e.m.Time }
func (e rawEntry) Delta() uint64      { return 0 }
func (e rawEntry) Operation() jetstream.KeyValueOp {
	switch e.m.Header.Get(kvOperationHeader) {
	case kvDelete:
		return jetstream.KeyValueDelete
	case kvPurge:
		return jetstream.KeyValuePurge
	}
	return jetstream.KeyValuePut
}

// sorted returns the visible accounts by name, then public key. The
// caller holds s.mu; the result is shared, not to be changed.
func (m *mirror) sortedAccounts() []*accountEntry {
	if m.sorted != nil {
		return m.sorted
	}
	out := make([]*accountEntry, 0, len(m.accounts))
	for _, e := range m.accounts {
		if m.visible(e) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *accountEntry) int {
		return cmp.Or(cmp.Compare(a.a.Name, b.a.Name), cmp.Compare(a.a.PublicKey, b.a.PublicKey))
	})
	m.sorted = out
	return out
}

// sweepOrphan is an entry the sweep finds left behind.
type sweepOrphan struct {
	key  string
	rev  uint64
	back *accountEntry // a revive's record, to make a tombstone again
	// account is set for a user record: its account, whose record is
	// read from the bucket before the user is removed.
	account string
	// pub and name are set for an account record its name entry does
	// not point to: the name entry is read from the bucket before the
	// record is removed or made a tombstone again.
	pub, name string
	// unreadable is set for an account record that cannot be read.
	unreadable bool
	// removedAt is, for a name entry the watcher saw removed, the
	// revision of its delete marker: the write-back goes there only.
	removedAt uint64
}

// sweep repairs what a crash left behind: live account records their
// name entry does not point to (a create that lost its name, or crashed
// before backing out: removed; a revive that lost it: the tombstone is
// written back, record.go), and user records of accounts that are gone (a
// removal that crashed after removing the account). The mirror is read in
// the bucket's order, so a name entry is always seen before the record
// created under it. Failures are logged; the next Open tries again.
func (s *Store) sweep(ctx context.Context) {
	var orphans []sweepOrphan
	s.mu.RLock()
	for pub, e := range s.m.accounts {
		if !s.m.visible(e) {
			// cmp.Or: a record sealed with a dropped key holds its name
			// in clear only.
			o := sweepOrphan{key: accountKey(pub), rev: e.a.Revision, pub: pub, name: cmp.Or(e.a.Name, e.lockedName), unreadable: e.err != nil}
			if e.revived != nil {
				o.back = e
			}
			orphans = append(orphans, o)
		}
	}
	for pub, e := range s.m.users {
		if _, ok := s.m.accounts[e.u.Account]; !ok {
			orphans = append(orphans, sweepOrphan{key: userKey(pub), rev: s.m.revs[userKey(pub)], account: e.u.Account})
		}
	}
	empty := s.m.emptyPacks()
	s.mu.RUnlock()
	beforeSweep()
	// Packs emptied by this sweep's own removals go at the next open.
	s.removePacks(ctx, empty)
	// account -> its record is not in the bucket (strays.go: the mirror's
	// view is not proof). A load that gave up on a bucket written faster
	// than it went (loadEntries) can lack an account record replaced
	// meanwhile (its old message removed), while its users are there. A
	// failed read counts as there.
	gone := map[string]bool{}
	for _, o := range orphans {
		cctx, cancel := s.ctx(ctx)
		if o.account != "" && !s.accountGone(cctx, o.account, gone) {
			cancel()
			continue
		}
		if o.name != "" {
			where := s.nameHeld(cctx, o.name, o.pub, o.rev)
			if where == nameMissing {
				s.nameBack(cctx, o)
			}
			if where != nameOther {
				cancel()
				continue
			}
		}
		var err error
		switch {
		case o.back != nil:
			err = s.tombstoneAgain(cctx, o.back)
		case o.name != "":
			// A create's record, never shown: voided, not removed
			// (store migrate tells the two apart).
			err = s.voidAt(cctx, o.key, o.rev, "create lost its name")
		default:
			err = s.deleteAt(cctx, o.key, o.rev)
		}
		cancel()
		switch {
		case err != nil:
			s.log.Warn("kvstore: cannot repair an entry left by an unfinished change", "key", o.key, "error", err)
		case o.back != nil:
			s.log.Info("kvstore: wrote back the tombstone of an account whose revive lost its name to another account", "key", o.key)
		case o.name != "":
			// The record held the account's seeds, gone for good now
			// (history 1 keeps nothing of it): an operator must hear of
			// it, at INFO it passed as routine.
			s.log.Warn("kvstore: removed the record of a create that lost its name to another account; its identity and signing seeds are dropped", "account", o.pub, "name", o.name, "key", o.key)
		default:
			s.log.Info("kvstore: removed an entry left by an unfinished change", "key", o.key)
		}
	}
}

// accountGone reports whether the bucket holds no record of account pub,
// reading it once per account (memo): the users of an account the mirror
// does not hold are left behind only if so. The mirror's view is no proof
// (an account record replaced while the watcher loaded, or missed by it).
// A failed read counts as there: the next look checks again.
func (s *Store) accountGone(ctx context.Context, pub string, memo map[string]bool) bool {
	if g, ok := memo[pub]; ok {
		return g
	}
	_, err := s.kv.Get(ctx, accountKey(pub))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn("kvstore: cannot read the account of user records that look left behind; the next open checks them again", "account", pub, "error", err)
	}
	g := errors.Is(err, jetstream.ErrKeyNotFound)
	memo[pub] = g
	return g
}

// Where the bucket's name entry of an account record that looks left
// behind points (nameHeld).
const (
	nameHere    = iota // to the record, or unknown (a failed read, damage)
	nameOther          // to another account
	nameMissing        // nowhere: the entry is gone
)

// nameHeld reports where the bucket's name entry for name points: to
// another account than pub, the record of pub is one a create or a revive
// left when it lost the name. The loaded mirror is no proof: a name entry
// rewritten to pub (a fenced create's, a revive's) after the watcher's
// initial values began can be missing from it while the record is there,
// and removing a live account's record loses its seeds. A failed read
// counts as pointing to pub. rev is the revision of pub's record.
func (s *Store) nameHeld(ctx context.Context, name, pub string, rev uint64) int {
	e, err := s.kv.Get(ctx, nameKey(name))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return nameMissing
	case err != nil:
		s.log.Warn("kvstore: cannot read the name entry of an account record that looks left behind; the next open checks it again", "account", pub, "error", err)
		return nameHere
	}
	holder := string(e.Value())
	if !validAccountKey(holder) {
		// Damage, which the load logged: the record is no create's
		// that lost its name to another account, and removing it loses
		// its seeds.
		s.log.Error("kvstore: the name entry of an account record holds no account public key; the record is kept, repair the name entry", "account", pub, "key", nameKey(name))
		return nameHere
	}
	if holder != pub {
		return s.heldBy(ctx, name, pub, holder, e.Revision() > rev)
	}
	return nameHere
}

// heldBy reports where the name entry for name points when it holds
// holder, another account than pub: to holder (nameOther) only when pub's
// record is a create's or a revive's that lost the name to holder's.
// Damage (a name entry rewritten by hand, and history 1 keeps nothing of
// what it held) made it look like one, and the record was removed, seeds
// and all.
//   - holder's record has the name: the name is holder's, and pub's record
//     lost it, however often the name changed hands since (a name entry
//     newer than the record is no sign of damage then).
//   - holder's record has another name: no write makes that (names never
//     change); damage, and the record is kept.
//   - holder has no record: a create that took the name over, cut short
//     before its record or still writing it, or damage. A record written
//     before the name entry (rewrittenAfter) is kept: it loses its name
//     to a take-over before it is written live (the take-over finds it
//     missing or not live), but for a create's or revive's fenced write
//     landing between the take-over's void of its key and its write of
//     the name, which only the holder's record, once written, tells
//     from damage.
func (s *Store) heldBy(ctx context.Context, name, pub, holder string, rewrittenAfter bool) int {
	e, err := s.kv.Get(ctx, accountKey(holder))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		if rewrittenAfter {
			// Damage, or a take-over whose create is still writing its
			// record or was cut short before it (the record then lost
			// the name in the take-over's own window: the void of its
			// key and the write of the name): which one, only the
			// holder's record can tell, once written. Kept, the record
			// is removed by the next open that finds it (nameOther);
			// voided, it was gone, seeds and all, if it was damage.
			s.log.Error("kvstore: the name entry of an account record was written after it with the key of an account that has no record: the record is kept, hidden; if that account's create is under way, the next open removes this record; if the name stays held by no account (account.get of the name finds none), the name entry was damaged: write this account's key into it", "account", pub, "key", nameKey(name), "named", holder)
			return nameHere
		}
		return nameOther
	case err != nil:
		s.log.Warn("kvstore: cannot read the account named by the name entry of an account record that looks left behind; the next open checks it again", "account", pub, "key", nameKey(name), "error", err)
		return nameHere
	}
	var rec struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Name != name {
		s.log.Error("kvstore: the name entry of an account record names an account of another name; the record is kept, repair the name entry with its key", "account", pub, "key", nameKey(name), "named", holder)
		return nameHere
	}
	return nameOther
}

// nameBack writes back the missing name entry of a live record. No name
// entry is no proof of a create that lost its name: a name entry removed
// by hand (`nats kv del`) leaves the same, and history 1 keeps nothing of
// what it held; voiding the record would lose the account's seeds. (A
// create cut short after losing its name, whose rival was removed since,
// leaves it too: that account is then shown, complete, under a name no
// other account holds, for its owner to remove.) A record that cannot be
// read (sealed with a key since dropped) is kept hidden: shown, it would
// refuse every open.
func (s *Store) nameBack(ctx context.Context, o sweepOrphan) {
	key := nameKey(o.name)
	if o.unreadable {
		s.log.Error("kvstore: an account record has no name entry and cannot be read; it is kept, hidden: give its seal key as a previous key, or write the name entry back", "account", o.pub, "key", key)
		return
	}
	var rev uint64
	var err error
	if o.removedAt > 0 {
		// Over the delete marker the watcher saw, not wherever the key
		// is missing: the bucket may have been deleted and made again
		// since the name loop checked the store was not lost, and a
		// create put the name, for an account the new bucket never
		// held, there.
		rev, err = s.kv.Update(ctx, key, []byte(o.pub), o.removedAt)
	} else {
		rev, err = s.kv.Create(ctx, key, []byte(o.pub))
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		if e, gerr := s.kv.Get(ctx, key); gerr == nil && string(e.Value()) == o.pub {
			return // another instance wrote it back; the watcher brings it
		}
	}
	if err != nil {
		s.log.Warn("kvstore: cannot write back the missing name entry of an account record; the next open tries again", "account", o.pub, "key", key, "error", err)
		return
	}
	s.log.Warn("kvstore: an account record had no name entry (removed by hand, or a create cut short whose rival was removed since); the name entry is written back and the account shown again", "account", o.pub, "key", key)
	s.mu.Lock()
	if s.lost == nil {
		// A lost mirror is not the bucket's (applyBrought).
		s.m.apply(change{key: key, rev: rev, name: o.name, pub: o.pub})
	}
	s.mu.Unlock()
}

// maxNameBacks bounds the name entries waiting to be written back; past
// it, the next open's sweep writes the rest back.
const maxNameBacks = 1000

// nameBackLater hands a name entry the watcher found removed under a live
// record to the name loop: written on the watcher's goroutine, the write
// held every other update for up to Options.Timeout while the server was
// slow or the stream stalled, and every SeenThrough meanwhile timed out.
func (s *Store) nameBackLater(o sweepOrphan) {
	s.nmu.Lock()
	_, queued := s.names[nameKey(o.name)]
	full := !queued && len(s.names) >= maxNameBacks
	if !full {
		s.names[nameKey(o.name)] = o
	}
	s.nmu.Unlock()
	if full {
		s.log.Warn("kvstore: too many name entries wait to be written back; the next open writes this one back", "account", o.pub, "key", nameKey(o.name))
		return
	}
	select {
	case s.nameSig <- struct{}{}:
	default:
	}
}

// nameLoop writes back the name entries nameBackLater queued until the
// store closes. What it has not written back by then, or could not, the
// next open's sweep writes back.
func (s *Store) nameLoop() {
	defer s.workers.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.nameSig:
		}
		s.nmu.Lock()
		todo := s.names
		s.names = map[string]sweepOrphan{}
		s.nmu.Unlock()
		for _, o := range todo {
			select {
			case <-s.stop:
				return
			default:
			}
			// Still missing under the same live record, as the watcher
			// saw it: the account may have been removed, or its name
			// written back or taken, while this waited.
			s.mu.RLock()
			e := s.m.accounts[o.pub]
			_, named := s.m.names[o.name]
			// Nor is the store lost: the bucket may be another now.
			still := s.checkOpen() == nil && !named && e != nil && e.err == nil && e.a.Live() && e.a.Name == o.name
			s.mu.RUnlock()
			if !still {
				continue
			}
			if hook := s.nameBackHook.Load(); hook != nil {
				(*hook)()
			}
			ctx, cancel := s.ctx(s.life)
			s.nameBack(ctx, o)
			cancel()
		}
	}
}

// tombstoneAgain writes back the tombstone a revive replaced, at the
// revive's revision. A tombstone holds no keys (provision drops them).
func (s *Store) tombstoneAgain(ctx context.Context, e *accountEntry) error {
	a := e.a
	a.Phase, a.DeletedAt, a.JWT = e.revived.Phase, e.revived.DeletedAt, e.revived.JWT
	a.IdentitySeed, a.SigningKeys = "", nil
	data, sealed, err := s.sealAccount(a, e, nil)
	if err != nil {
		return err
	}
	// The revive's record write can still be in process on the leader of
	// a replicated stream (it answers a write before it clears it): its
	// refusal (10164), which nats.go reports as a revision mismatch, says
	// nothing of the revision, so the write-back is sent again once that
	// write is settled.
	var rev uint64
	err = untilSettled(ctx, "write back the tombstone of account "+a.PublicKey, func() (err error) {
		rev, err = s.kv.Update(ctx, accountKey(a.PublicKey), data, e.a.Revision)
		return err
	})
	if err != nil {
		return err
	}
	a.Revision = 0
	s.mu.Lock()
	s.m.apply(change{key: accountKey(a.PublicKey), rev: rev, acct: &accountEntry{a: a, sealed: sealed}})
	s.mu.Unlock()
	return nil
}

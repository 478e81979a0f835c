// Package filestore is the provisioner's store for a single instance: the
// state of provision.Store kept in one directory, served from memory.
//
// The directory (mode 0700) holds, each mode 0600:
//
//   - snapshot.v2: the whole state at one sequence number, one checksummed
//     and numbered line per account and per user, between a header that
//     names the snapshot and a trailer that counts its lines;
//   - journal.v2: the changes since that snapshot, one checksummed line a
//     record, written into zero-filled space after two header slots. The
//     header names the snapshot the journal belongs to and how many bytes
//     of it are committed; it is rewritten, alternating slots, after each
//     commit's data is flushed, and flushed after the commit is
//     acknowledged (with the next commit's records, while more wait);
//   - lock: locked (flock) by the process that has the store open, and
//     holding its process ID; while the first Open of a new store has not
//     finished, also a line that says so (see lockNewMark).
//
// Every change has a sequence number, store-wide; an account's revision is
// the sequence of the record that last wrote it. Account changes are
// durable before the call returns: their records are flushed (fdatasync),
// and a start keeps every valid record, numbered in order, past the
// header's count as well as before it. The header that counts them is
// flushed after the answer, with the records of the next batch while
// more wait: a change waits for one flush, not two. Concurrent changes
// share the flushes (group commit). A user record may be written lazily,
// within a few tens of milliseconds, since it lists a user and secures
// nothing. Reads are served from memory.
//
// Damage is not dropped silently: a changed byte, a hole, a cut, a missing
// file, a journal that does not belong to its snapshot or a seed that does
// not derive the public key beside it stop Open with an error naming the
// file and offset or the account (ErrDamaged). Only a tail that was never
// acknowledged, torn by a crash, is left out. Check reads a store without
// changing it and reports all it finds; Salvage copies what is intact into
// a new store.
package filestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// Errors of the store, beside the provision error kinds its methods
// return.
var (
	// ErrLocked: another Store, in this process or another, has the
	// directory open.
	ErrLocked = errors.New("filestore: store is in use")
	// ErrDamaged: the files hold something the store did not write, or
	// lack something it did. The error is a *Damage naming file and
	// offset; Check lists every damage, Salvage copies what is intact.
	ErrDamaged = errors.New("filestore: store is damaged")
	// ErrSealKey: the store holds sealed seeds and no seal key, or not the
	// one that sealed them, was given.
	ErrSealKey = errors.New("filestore: wrong or missing seal key")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("filestore: store is closed")
	// ErrNoStore: Options.Existing was set and the directory holds no
	// store.
	ErrNoStore = errors.New("filestore: no store in the directory")
)

// Damage is one place where a store's files are damaged. As an error it
// matches ErrDamaged.
type Damage struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	What   string `json:"what"`
}

func (d *Damage) Error() string {
	return fmt.Sprintf("%v: %s at byte %d: %s", ErrDamaged, d.File, d.Offset, d.What)
}

// Unwrap makes a Damage match ErrDamaged.
func (d *Damage) Unwrap() error { return ErrDamaged }

// Options tune a Store. The zero value is usable.
type Options struct {
	// Seal, when set, seals identity and signing seeds on disk: they are
	// written only sealed, and plain ones found are sealed at the next
	// compaction (Open does one when it finds any). A store that holds
	// sealed seeds does not open without it.
	Seal *seal.Key
	// Logger receives recovery, compaction and upgrade messages. Default:
	// discard.
	Logger *slog.Logger
	// CompactBytes is the journal size past which the store writes a new
	// snapshot and starts an empty journal. Default 64 MiB.
	CompactBytes int64
	// Existing opens a store that is there only to read it (store
	// migrate's source): a directory without one fails with ErrNoStore,
	// and nothing is written, in the directory or elsewhere. The store is
	// read into memory without the lock, as Check reads it, so that a
	// service that has it open goes on (and one that starts meanwhile is
	// not kept out); what that service writes after the read is not in
	// it. Nothing a start repairs or upgrades is written back: Seal only
	// opens the seeds. Every change fails with provision.ErrInvalid.
	Existing bool
}

// Store is the store kept in one directory. It is safe for concurrent use.
type Store struct {
	dir string
	log *slog.Logger
	key *seal.Key
	// readOnly: opened with Existing, without lock or committer (lock
	// and c are nil); every change fails.
	readOnly bool
	lock     *os.File
	// dirLock holds the flock on the directory itself (lockDirInode);
	// nil where the directory cannot be flocked.
	dirLock *os.File
	// lockMarked: the lock file has the new-store mark, which claimLock
	// takes off.
	lockMarked bool
	c          *committer

	mu sync.RWMutex
	st *state
	// lazy holds user records applied but not yet written, framed, in
	// sequence order.
	lazy []byte
	// pendDead and pendUsers reserve, while a batch is being written, the
	// accounts it makes non-live and the user keys it records, so that a
	// lazy user record checked meanwhile sees them.
	pendDead  map[string]int
	pendUsers map[string]int
	closed    bool
	// broken is set when a failed write could not be followed by a new
	// snapshot: every write fails with it until the store is reopened.
	broken error
	// submitting counts callers between their checks and the hand-off to
	// the committer, so that Close does not close the queue under them.
	submitting sync.WaitGroup
}

var _ provision.Store = (*Store)(nil)

var errClosed = fmt.Errorf("%w: %w", ErrClosed, provision.ErrUnavailable)

// Open opens the store in dir, creating the directory (mode 0700) and an
// empty store if there is none, and upgrading a previous version's store
// (its files are kept as *.v1). It fails with ErrLocked when the store is
// open elsewhere, ErrDamaged (a *Damage) when its files are damaged (or
// gone: a directory that held a store, as its lock file or kept files
// show, does not open empty), and ErrSealKey when it holds sealed seeds
// the options give no key for. A file it may not read or write fails it
// with an error that says whose the file is and what to do (see
// explainPermission).
func Open(dir string, opts Options) (*Store, error) {
	s, err := openDir(dir, opts)
	if err != nil {
		return nil, explainPermission(dir, err)
	}
	return s, nil
}

func openDir(dir string, opts Options) (*Store, error) {
	if opts.CompactBytes <= 0 {
		opts.CompactBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Existing {
		if !holdsStore(dir) {
			return nil, fmt.Errorf("%w: %s has neither %s nor a previous version's %s or %s", ErrNoStore, dir, snapshotFile, v1SnapshotFile, v1JournalFile)
		}
		return openRead(dir, opts)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filestore: create %s: %w", dir, err)
	}
	// MkdirAll leaves an existing directory as it was; the seeds inside must
	// not be readable by others whatever it was made with.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("filestore: %w", err) // names the directory
	}
	lock, prevLock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	dirLock, err := lockDirInode(dir)
	if err != nil {
		// The owner's lock file was removed: one this Open made goes
		// too, as the directory was before it, so that it names no
		// process that does not have the store open.
		if prevLock == lockAbsent {
			os.Remove(filepath.Join(dir, lockFile))
		}
		lock.Close()
		return nil, err
	}
	s := &Store{
		dir:        dir,
		log:        opts.Logger,
		key:        opts.Seal,
		lock:       lock,
		dirLock:    dirLock,
		lockMarked: prevLock != lockHeld,
		pendDead:   map[string]int{},
		pendUsers:  map[string]int{},
	}
	err = stepHook(stepLocked)
	var j *journal
	if err == nil {
		j, err = s.start(prevLock)
	}
	if err == nil {
		// A new store holds state now: its first generation is in place.
		if err = s.claimLock(); err != nil {
			j.close()
		}
	}
	if err != nil {
		// A lock file still marked goes with this Open, while it holds the
		// lock: it shows nothing of a store, and need not stay.
		if s.lockMarked {
			os.Remove(filepath.Join(dir, lockFile))
		}
		lock.Close()
		if dirLock != nil {
			dirLock.Close()
		}
		return nil, err
	}
	s.c = newCommitter(s, j, opts.CompactBytes)
	return s, nil
}

// start loads the directory, finishes what a crash cut short, and returns
// the journal to go on with.
func (s *Store) start(prevLock lockState) (*journal, error) {
	// A version 1 store is read again when provisioner 0.1, which takes no
	// lock this one sees, compacted it during the read (v1ReadAgain): the
	// upgrade of such a read held the old snapshot.json with the new empty
	// journal, losing what the old journal held, and renamed the files
	// that held it out of the way.
	var l *loader
	var res *loaded
	var err error
	for attempt := 0; ; attempt++ {
		l = &loader{dir: s.dir, key: s.key, strict: true, rep: &Report{}, lock: prevLock}
		if res, err = l.load(); err != nil {
			return nil, err
		}
		again, err := v1ReadAgain(s.dir, res, attempt)
		if err != nil {
			return nil, err
		}
		if !again {
			break
		}
	}
	if res.kind != formatNew {
		// The directory holds a store: the lock file shows it before
		// anything is written, so that a generation written under a
		// marked lock file is only ever a new store's first.
		if err := s.claimLock(); err != nil {
			return nil, err
		}
	}
	s.st = res.st
	for _, n := range l.rep.Notes {
		s.log.Warn("filestore: " + n)
	}
	// Said as Check says it: a tail left out without a word could be a
	// batch that was answered (damaged, or past a torn header slot), and
	// only the log tells an operator to look.
	if n := res.tornTail(); n != "" {
		s.log.Warn("filestore: "+n, "journal", l.path(res.jpath), "at", res.recEnd, "to", res.tailEnd)
	}
	for _, n := range res.leftovers {
		if err := os.Remove(l.path(n)); err != nil {
			return nil, fmt.Errorf("filestore: remove %s: %w", n, err)
		}
	}
	if res.useNew {
		// Finish the compaction that a crash cut short between its renames.
		if err := os.Rename(l.path(journalFile+newSuffix), l.path(journalFile)); err != nil {
			return nil, fmt.Errorf("filestore: finish compaction: %w", err)
		}
		if err := syncDir(s.dir); err != nil {
			return nil, fmt.Errorf("filestore: finish compaction: %w", err)
		}
		res.jpath = journalFile
	}
	reseal := l.forms.stale > 0
	if reseal {
		// Seal with the current key what is plain or sealed with an old one.
		for _, e := range s.st.accounts {
			if e.disk, err = toDisk(&e.a, s.key, nil); err != nil {
				return nil, err
			}
		}
	}
	// An upgrade not yet finished keeps the checksums of the files it was
	// made from, so that a crash before their renames is finished too.
	fromV1 := res.fromV1
	switch {
	case res.kind == formatV2 && res.records == 0 && !res.dirty && !res.fellBack && !res.hdr.closed && !reseal:
		// Nothing to fold in: go on with the journal as it is.
		j, err := openJournal(l.path(journalFile), res.hdr, res.jsize)
		if err != nil {
			return nil, err
		}
		if err := s.finishUpgrade(res.v1Done); err != nil {
			j.close()
			return nil, err
		}
		return j, nil
	}
	// Fold what the journal holds into a new snapshot, so that start-up
	// time stays bounded by the state, not the history, and a torn tail is
	// left behind with the old journal.
	j, placed, err := s.newGeneration(fromV1)
	if err != nil && !placed && isNoRoom(err) && res.kind == formatV2 && !res.hdr.closed && !reseal {
		// A disk with no room: the journal is intact, and the running
		// store goes on with it in the same case (a compaction that
		// failed). Refused, an instance restarted on a full disk served
		// nothing, not even reads, until an operator made room; the
		// new snapshot waits for it (the next compaction, or start).
		s.log.Warn("filestore: no room for a new snapshot folding the journal in ("+roomWanting(err)+"); going on with the journal, and the new snapshot waits for room", "records", res.records, "past_header_kept", res.kept, "error", err)
		j, err := openJournal(l.path(journalFile), res.hdr, res.jsize)
		if err != nil {
			return nil, err
		}
		if res.kept > 0 || res.dirty || res.fellBack {
			// A crash left records past the header's count (answered
			// ones, most likely: the header is flushed after the
			// answer), a torn tail, or a torn header slot. Refused
			// here, every kill -9 under load made a restart on a full
			// disk fail, where a clean stop's did not. The journal
			// goes on after the records kept, in space it has.
			if err := j.goOnAfter(res.recEnd, res.recSeq, res.tailEnd); err != nil {
				j.close()
				return nil, noRoom(fmt.Errorf("filestore: go on with the journal: %w", err))
			}
		}
		if err := s.finishUpgrade(res.v1Done); err != nil {
			j.close()
			return nil, err
		}
		return j, nil
	}
	if err != nil {
		return nil, noRoom(err)
	}
	switch res.kind {
	case formatV1:
		var names []string
		for n := range res.fromV1 {
			names = append(names, n)
		}
		slices.Sort(names)
		err = s.finishUpgrade(names)
	case formatV2:
		err = s.finishUpgrade(res.v1Done)
		if res.records > 0 {
			s.log.Info("filestore folded its journal into a new snapshot", "records", res.records, "past_header_kept", res.kept, "accounts", len(s.st.accounts))
		}
	case formatNew:
		s.log.Info("filestore created a new store", "dir", s.dir)
	}
	if err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// openRead loads the store in dir into memory for a reader (Existing).
// An Open writes into the directory (a new snapshot folding the journal
// in, an upgrade of a version 1 store, seeds sealed anew, its lock file):
// files a reader run by another user leaves the service unable to open,
// an upgrade the version that owns the store does not read, seeds it no
// longer opens with its own key. A reader writes nothing and takes no
// lock; like Check, it reads again when a read met a compaction of the
// service that has the store open.
func openRead(dir string, opts Options) (*Store, error) {
	for attempt := 0; ; attempt++ {
		prevLock, err := readLock(dir)
		if err != nil {
			return nil, err
		}
		l := &loader{dir: dir, key: opts.Seal, strict: true, rep: &Report{}, lock: prevLock}
		res, err := l.load()
		pid, running := ownerRunning(dir)
		if err != nil && running && attempt < 2 {
			// The owner may have been between the steps of a compaction.
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		if again, err := v1ReadAgain(dir, res, attempt); err != nil {
			return nil, err
		} else if again {
			continue
		}
		for _, n := range l.rep.Notes {
			opts.Logger.Warn("filestore: " + n)
		}
		if running {
			opts.Logger.Warn("filestore: the store is open in another process, and was read as it was now: what it writes later is not in this read", "dir", dir, "pid", pid)
		}
		return &Store{
			dir:       dir,
			log:       opts.Logger,
			key:       opts.Seal,
			readOnly:  true,
			st:        res.st,
			pendDead:  map[string]int{},
			pendUsers: map[string]int{},
		}, nil
	}
}

// v1ReadAgain reports whether a load that read a version 1 store must be
// read again, after a pause: provisioner 0.1 serving from the store takes
// no lock a reader sees, and compacts by putting a new snapshot.json in
// place, then an empty journal, so the snapshot read and the journal read
// after it may be of two generations, which loses what the old journal
// held. After the fifth such load it fails, naming the writer. Every
// reader of a store that does not take its lock (openRead, Check,
// Salvage) goes through it, and so does the start that upgrades one.
func v1ReadAgain(dir string, res *loaded, attempt int) (bool, error) {
	if res.kind != formatV1 || v1SnapshotAsRead(dir, res) {
		return false, nil
	}
	if attempt < 4 {
		time.Sleep(50 * time.Millisecond)
		return true, nil
	}
	return false, fmt.Errorf("filestore: %s: snapshot.json changed while it was read, again and again: a process (provisioner 0.1?) is writing the store; stop it and read it again", dir)
}

// v1SnapshotAsRead reports whether the version 1 store's snapshot.json is
// still the one a load read (or still absent).
func v1SnapshotAsRead(dir string, res *loaded) bool {
	data, err := os.ReadFile(filepath.Join(dir, v1SnapshotFile))
	sum, read := res.fromV1[v1SnapshotFile]
	if errors.Is(err, fs.ErrNotExist) {
		return !read
	}
	return err == nil && read && fileSum(data) == sum
}

// errReadOnly: a change to a store opened to be read.
var errReadOnly = fmt.Errorf("filestore: the store was opened to be read (Options.Existing), and takes no change: %w", provision.ErrInvalid)

// newGeneration writes the state as a new snapshot with an empty journal,
// before the committer runs.
// placed reports that the new snapshot is in place (see writeGeneration).
func (s *Store) newGeneration(fromV1 map[string]string) (*journal, bool, error) {
	id, err := newID()
	if err != nil {
		return nil, false, err
	}
	data, err := encodeSnapshot(s.st, id, fromV1)
	if err != nil {
		return nil, false, err
	}
	return writeGeneration(s.dir, data, id, s.st.seq)
}

// finishUpgrade renames the previous version's files, now held by the
// store, out of the way, and logs the upgrade: once, since the files are
// gone after it.
func (s *Store) finishUpgrade(names []string) error {
	var backups []string
	for _, n := range names {
		b := backupName(s.dir, n)
		// The backups hold every seed in the clear: 0600 like the store's
		// own files, whatever the old ones were left with (copied back
		// from elsewhere, 0644), before they are there by that name.
		if err := os.Chmod(filepath.Join(s.dir, n), 0o600); err != nil {
			return fmt.Errorf("filestore: keep %s as a backup: %w", n, err)
		}
		if err := os.Rename(filepath.Join(s.dir, n), filepath.Join(s.dir, b)); err != nil {
			return fmt.Errorf("filestore: keep %s as a backup: %w", n, err)
		}
		backups = append(backups, b)
		if err := stepHook(stepV1Renamed); err != nil {
			return err
		}
	}
	if len(names) == 0 {
		return nil
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("filestore: flush store directory: %w", err)
	}
	s.log.Info("filestore upgraded a version 1 store", "dir", s.dir, "accounts", len(s.st.accounts), "users", s.st.nusers, "backups", strings.Join(backups, ", "))
	if s.key != nil {
		// The backups are the old files as they were, for going back to
		// the old version: their seeds are in the clear, and a copy of
		// the directory is no longer useless without the seal key until
		// they are gone.
		s.log.Warn("filestore: the version 1 backups hold the seeds unsealed; remove them once the upgrade is trusted", "dir", s.dir, "backups", strings.Join(backups, ", "))
	}
	return nil
}

// Close writes the user records that wait, stops the committer, and
// releases the directory. Later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.readOnly {
		return nil
	}
	s.submitting.Wait()
	err := s.c.close()
	if cerr := s.lock.Close(); err == nil {
		err = cerr
	}
	if s.dirLock != nil {
		if cerr := s.dirLock.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Account returns the account, live or tombstone, with public key pub.
func (s *Store) Account(_ context.Context, pub string) (provision.Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return provision.Account{}, errClosed
	}
	e, ok := s.st.accounts[pub]
	if !ok {
		return provision.Account{}, fmt.Errorf("filestore: account %s: %w", pub, provision.ErrNotFound)
	}
	return copyAccount(e.a), nil
}

// AccountByName returns the live account with the given name.
func (s *Store) AccountByName(_ context.Context, name string) (provision.Account, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return provision.Account{}, errClosed
	}
	pub, ok := s.st.names[name]
	if !ok {
		return provision.Account{}, fmt.Errorf("filestore: no live account named %q: %w", name, provision.ErrNotFound)
	}
	return copyAccount(s.st.accounts[pub].a), nil
}

// Accounts returns every account, tombstones included, sorted by name and
// then public key.
func (s *Store) Accounts(_ context.Context) ([]provision.Account, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, errClosed
	}
	out := make([]provision.Account, 0, len(s.st.accounts))
	for _, e := range s.st.accounts {
		out = append(out, copyAccount(e.a))
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b provision.Account) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.PublicKey, b.PublicKey)
	})
	return out, nil
}

// User returns the record of a user public key, in whichever account.
func (s *Store) User(_ context.Context, userPub string) (provision.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return provision.User{}, errClosed
	}
	r, ok := s.st.users[userPub]
	if !ok {
		return provision.User{}, fmt.Errorf("filestore: user %s: %w", userPub, provision.ErrNotFound)
	}
	return r.u, nil
}

// Users returns the user records of an account, live or tombstone, in
// issue order.
func (s *Store) Users(_ context.Context, account string) ([]provision.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	e, ok := s.st.accounts[account]
	if !ok {
		return nil, fmt.Errorf("filestore: account %s: %w", account, provision.ErrNotFound)
	}
	return copyUsers(e.users), nil
}

// UsersNamed returns the user records of an account with the given name,
// in issue order, without looking at the account's other users.
func (s *Store) UsersNamed(_ context.Context, account, name string) ([]provision.User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	e, ok := s.st.accounts[account]
	if !ok {
		return nil, fmt.Errorf("filestore: account %s: %w", account, provision.ErrNotFound)
	}
	return copyUsers(e.byName[name]), nil
}

// CreateAccount stores a new live account and returns its revision, once
// it is durable. It fails with ErrConflict when a live account has the
// name or any record has the public key, and ErrInvalid when the account's
// seeds, keys and JWT do not belong together.
//
// Like every change, once submitted it is waited for even when ctx ends:
// a caller told "failed" about a change that then lands would undo nothing
// it did elsewhere.
func (s *Store) CreateAccount(ctx context.Context, a provision.Account) (uint64, error) {
	if !a.Live() {
		return 0, fmt.Errorf("filestore: create account %s: phase %q is not live: %w", a.PublicKey, a.Phase, provision.ErrInvalid)
	}
	o, err := s.accountOp(ctx, opCreate, a)
	if err != nil {
		return 0, err
	}
	if err := s.submit(o); err != nil {
		return 0, err
	}
	return o.seq, nil
}

// UpdateAccount replaces the account whose current revision is rev and
// returns the new revision, once it is durable. It fails with ErrNotFound,
// ErrStale when rev is not current, ErrInvalid when the name would change
// or the keys do not belong together, and ErrConflict when a tombstone
// would come back to life under a name a live account has.
func (s *Store) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	o, err := s.accountOp(ctx, opUpdate, a)
	if err != nil {
		return 0, err
	}
	o.rev = rev
	if err := s.submit(o); err != nil {
		return 0, err
	}
	return o.seq, nil
}

// RemoveAccount forgets an account and its user records, once that is
// durable. It fails with ErrNotFound, and ErrStale when rev is not the
// account's current revision.
func (s *Store) RemoveAccount(ctx context.Context, pub string, rev uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	body, err := json.Marshal(journalRecord{Op: opRemove, PublicKey: pub})
	if err != nil {
		return fmt.Errorf("filestore: encode record: %w", err)
	}
	return s.submit(&op{kind: opRemove, pub: pub, rev: rev, body: body})
}

// accountOp checks an account and prepares its record: seeds sealed, JSON
// encoded, in the caller's goroutine rather than the committer's.
func (s *Store) accountOp(ctx context.Context, kind string, a provision.Account) (*op, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// What the store holds of the account: its seeds need not be derived
	// or sealed again. The committer checks the revision later.
	var prev *held
	if kind == opUpdate {
		s.mu.RLock()
		if e, ok := s.st.accounts[a.PublicKey]; ok {
			h := e.held
			prev = &h
		}
		s.mu.RUnlock()
	}
	signers, err := checkAccount(&a, true, prev)
	if err != nil {
		return nil, fmt.Errorf("filestore: account %s (%q): %v: %w", a.PublicKey, a.Name, err, provision.ErrInvalid)
	}
	a.SigningKeys = slices.Clone(a.SigningKeys)
	a.Revision = 0
	d, err := toDisk(&a, s.key, prev)
	if err != nil {
		return nil, fmt.Errorf("filestore: account %s: %w", a.PublicKey, err)
	}
	body, err := json.Marshal(journalRecord{Op: kind, Account: &d})
	if err != nil {
		return nil, fmt.Errorf("filestore: encode record: %w", err)
	}
	return &op{kind: kind, account: a, held: held{a: a, disk: d, signers: signers}, body: body}, nil
}

// AddUser records an issued user. It fails with ErrConflict when the key
// has a record, ErrNotFound when the account has no live record, and
// ErrInvalid for a key that is not a user key. With durable false the
// record is applied at once and written within lazyDelay, without the
// caller waiting; with durable true it is applied once it is durable.
func (s *Store) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkUser(&u); err != nil {
		return fmt.Errorf("filestore: user %s: %v: %w", u.PublicKey, err, provision.ErrInvalid)
	}
	body, err := json.Marshal(journalRecord{Op: opUser, User: &u})
	if err != nil {
		return fmt.Errorf("filestore: encode record: %w", err)
	}
	if durable {
		return s.submit(&op{kind: opUser, user: u, body: body})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errClosed
	case s.readOnly:
		return errReadOnly
	case s.broken != nil:
		return s.broken
	}
	if e, ok := s.st.accounts[u.Account]; !ok || !e.a.Live() || s.pendDead[u.Account] > 0 {
		return fmt.Errorf("filestore: account %s has no live record: %w", u.Account, provision.ErrNotFound)
	}
	if _, ok := s.st.users[u.PublicKey]; ok || s.pendUsers[u.PublicKey] > 0 {
		return fmt.Errorf("filestore: user %s already has a record: %w", u.PublicKey, provision.ErrConflict)
	}
	s.st.seq++
	if err := s.st.addUser(s.st.seq, u); err != nil {
		return fmt.Errorf("filestore: user %s: %w", u.PublicKey, err)
	}
	s.lazy = appendFrame(s.lazy, s.st.seq, body)
	s.c.nudge(len(s.lazy))
	return nil
}

// Broken reports why the store refuses every change until it is reopened:
// a failed journal write it could neither close nor replace with a new
// snapshot. It is nil while the store serves.
func (s *Store) Broken() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.broken
}

// submit hands an operation to the committer and waits for its outcome.
func (s *Store) submit(o *op) error {
	o.done = make(chan struct{})
	s.mu.RLock()
	switch {
	case s.closed:
		s.mu.RUnlock()
		return errClosed
	case s.readOnly:
		s.mu.RUnlock()
		return errReadOnly
	case s.broken != nil:
		s.mu.RUnlock()
		return s.broken
	}
	s.submitting.Add(1)
	s.mu.RUnlock()
	s.c.in <- o
	s.submitting.Done()
	<-o.done
	return o.err
}

// holdsV1 reports whether dir has a previous version's store: its
// snapshot, or its journal alone (version 1 wrote its first snapshot only
// when a start found records in the journal, or at a compaction).
func holdsV1(dir string) bool {
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// holdsStore reports whether dir has a snapshot of this version or a store
// of the previous one (a compaction's new snapshot counts: Open completes
// it).
func holdsStore(dir string) bool {
	for _, n := range []string{snapshotFile, snapshotFile + newSuffix} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return holdsV1(dir)
}

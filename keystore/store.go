// Package keystore is the store of provisioner 0.1, kept unchanged so that
// filestore's tests can write stores of that format with the code that
// wrote them and check the upgrade; nothing else uses it. Its own text
// follows.
//
// Package keystore keeps what the provisioner must remember across restarts:
// for every account it manages, the account's identity seed, its signing
// seeds, the latest JWT pushed for it, and the record of the users issued
// under it. User seeds are never stored.
//
// The state lives in memory and is made durable in a directory holding two
// files, both mode 0600 in a 0700 directory:
//
//   - snapshot.json: the whole state, rewritten atomically (temp file, fsync,
//     rename, fsync of the directory) when the journal is compacted;
//   - journal: a log of changes since the snapshot, one checksummed JSON
//     record a line, written into zero-filled space so that a commit only
//     flushes data (fdatasync).
//
// Every change to an account is written to the journal and fsynced before
// the call that made it returns. Concurrent changes share one fsync (group
// commit), so the cost of durability does not grow with the number of
// callers, and nothing a change does depends on how many accounts the store
// holds. User records are the exception: see AddUser.
package keystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Errors returned by the store. Callers check them with errors.Is.
var (
	ErrNotFound = errors.New("keystore: account not found")
	ErrConflict = errors.New("keystore: account name already in use")
	ErrClosed   = errors.New("keystore: store is closed")
)

// Account is what the store keeps of one account, users aside.
type Account struct {
	Name         string `json:"name"`
	PublicKey    string `json:"public_key"`
	IdentitySeed Seed   `json:"identity_seed"`
	SigningSeeds []Seed `json:"signing_seeds"`
	JWT          string `json:"jwt"`
}

// LogValue keeps the seeds out of logs, whatever the handler: the JSON
// handler would otherwise marshal them.
func (a Account) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", a.Name), slog.String("public_key", a.PublicKey))
}

// User is the record of one issued user. It never holds the user's seed.
type User struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
}

// Summary names an account, for listings.
type Summary struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
}

// entry is the in-memory state of one account.
type entry struct {
	account Account
	users   []User
	byUser  map[string]int      // user public key -> index in users
	byName  map[string][]string // user name -> public keys, in issue order
}

func newEntry(a Account) *entry {
	return &entry{account: a, byUser: map[string]int{}, byName: map[string][]string{}}
}

func (e *entry) addUser(u User) {
	if i, ok := e.byUser[u.PublicKey]; ok {
		// Re-issuing a key replaces its record; replay after a crash in the
		// middle of a compaction also lands here.
		old := e.users[i]
		e.byName[old.Name] = slices.DeleteFunc(e.byName[old.Name], func(k string) bool { return k == u.PublicKey })
		if len(e.byName[old.Name]) == 0 {
			delete(e.byName, old.Name)
		}
		e.users[i] = u
	} else {
		e.byUser[u.PublicKey] = len(e.users)
		e.users = append(e.users, u)
	}
	e.byName[u.Name] = append(e.byName[u.Name], u.PublicKey)
}

// Options tune a DirStore. The zero value is usable.
type Options struct {
	// CompactBytes is the journal size past which the store writes a new
	// snapshot and starts an empty journal. Default 64 MiB.
	CompactBytes int64
	// Logger receives compaction and recovery messages. Default: discard.
	Logger *slog.Logger
}

// DirStore is the store kept in one directory. It is safe for concurrent
// use. Open it with Open and release it with Close.
type DirStore struct {
	dir    string
	log    *slog.Logger
	commit *committer

	mu       sync.RWMutex
	accounts map[string]*entry // public key -> entry
	names    map[string]string // account name -> public key
	reserved map[string]string // names of puts not yet durable -> public key
	pending  map[string]string // public keys of those puts -> name
	lazy     []byte            // user records not yet written
	closed   bool
	// submitting counts callers between their checks and the hand-off to
	// the committer, so that Close does not close the queue under them.
	submitting sync.WaitGroup
}

// Open loads the store in dir, creating the directory (mode 0700) if needed,
// and starts its journal writer. A torn last journal line, left by a crash
// in the middle of a write, is dropped; any other damage is an error.
func Open(dir string, opts Options) (*DirStore, error) {
	if opts.CompactBytes <= 0 {
		opts.CompactBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create %s: %w", dir, err)
	}
	// MkdirAll leaves an existing directory as it was; the seeds inside must
	// not be readable by others whatever the directory was made with.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: chmod %s: %w", dir, err)
	}
	s := &DirStore{
		dir:      dir,
		log:      opts.Logger,
		accounts: map[string]*entry{},
		names:    map[string]string{},
		reserved: map[string]string{},
		pending:  map[string]string{},
	}
	if err := s.loadSnapshot(); err != nil {
		return nil, err
	}
	replayed, err := s.replayJournal()
	if err != nil {
		return nil, err
	}
	if replayed > 0 {
		// Fold the journal into a fresh snapshot so that start-up time stays
		// bounded by the state, not by the history.
		if err := s.writeSnapshot(); err != nil {
			return nil, err
		}
		s.log.Info("keystore compacted journal at start-up", "records", replayed, "accounts", len(s.accounts))
	}
	// Every start begins a new journal: what the old one held is in the
	// snapshot now, and a torn tail it may have had is gone with it.
	path := filepath.Join(dir, journalFile)
	j, err := newJournal(path)
	if err != nil {
		if j != nil {
			j.Close()
		}
		return nil, err
	}
	s.commit = newCommitter(s, path, j, opts.CompactBytes)
	return s, nil
}

// Close waits for pending writes, stops the journal writer and closes the
// journal. Later calls fail with ErrClosed.
func (s *DirStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.submitting.Wait()
	return s.commit.close()
}

// Account returns the account with the given public key.
func (s *DirStore) Account(pub string) (Account, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.accounts[pub]
	if !ok {
		return Account{}, false
	}
	return e.account, true
}

// AccountByName returns the account with the given name.
func (s *DirStore) AccountByName(name string) (Account, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pub, ok := s.names[name]
	if !ok {
		return Account{}, false
	}
	return s.accounts[pub].account, true
}

// Accounts lists every account, sorted by name.
func (s *DirStore) Accounts() []Summary {
	s.mu.RLock()
	out := make([]Summary, 0, len(s.accounts))
	for _, e := range s.accounts {
		out = append(out, Summary{Name: e.account.Name, PublicKey: e.account.PublicKey})
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b Summary) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Len returns the number of accounts.
func (s *DirStore) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.accounts)
}

// Users returns the users recorded for an account, in issue order.
func (s *DirStore) Users(pub string) ([]User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.accounts[pub]
	if !ok {
		return nil, fmt.Errorf("%s: %w", pub, ErrNotFound)
	}
	return slices.Clone(e.users), nil
}

// UsersNamed returns the users of an account that were issued with the given
// name, in issue order, without scanning the account's other users.
func (s *DirStore) UsersNamed(pub, name string) ([]User, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.accounts[pub]
	if !ok {
		return nil, fmt.Errorf("%s: %w", pub, ErrNotFound)
	}
	keys := e.byName[name]
	out := make([]User, 0, len(keys))
	for _, k := range keys {
		out = append(out, e.users[e.byUser[k]])
	}
	return out, nil
}

// User returns the record of one user of an account.
func (s *DirStore) User(pub, userPub string) (User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.accounts[pub]
	if !ok {
		return User{}, false
	}
	i, ok := e.byUser[userPub]
	if !ok {
		return User{}, false
	}
	return e.users[i], true
}

// PutAccount creates an account or replaces an existing one (users are
// kept), and returns once the change is durable. It does not give up when
// ctx ends: a change once submitted is waited for, so that the caller
// knows whether it happened. It fails with ErrConflict
// when another account has the same name.
func (s *DirStore) PutAccount(_ context.Context, a Account) error {
	if a.PublicKey == "" || a.Name == "" {
		return fmt.Errorf("keystore: put account: name and public key are required")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if owner, ok := s.names[a.Name]; ok && owner != a.PublicKey {
		s.mu.Unlock()
		return fmt.Errorf("%q: %w", a.Name, ErrConflict)
	}
	if owner, ok := s.reserved[a.Name]; ok && owner != a.PublicKey {
		s.mu.Unlock()
		return fmt.Errorf("%q: %w", a.Name, ErrConflict)
	}
	name, ok := s.pending[a.PublicKey]
	if e, exists := s.accounts[a.PublicKey]; exists {
		name, ok = e.account.Name, true
	}
	if ok && name != a.Name {
		s.mu.Unlock()
		return fmt.Errorf("keystore: account %s cannot be renamed from %q to %q", a.PublicKey, name, a.Name)
	}
	s.reserved[a.Name] = a.PublicKey
	s.pending[a.PublicKey] = a.Name
	return s.submit(record{Op: opPut, Account: &a})
}

// DeleteAccount forgets an account, its seeds and its users, and returns
// once the change is durable.
func (s *DirStore) DeleteAccount(_ context.Context, pub string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, ok := s.accounts[pub]; !ok {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", pub, ErrNotFound)
	}
	return s.submit(record{Op: opDelete, PublicKey: pub})
}

// AddUser records a user issued under an account. The record is visible at
// once and reaches the journal, fsynced, within lazySyncDelay (or with the
// next change to an account, or at Close), without the caller waiting: a
// user JWT needs nothing stored to work, the record only lists it, so a
// crash in that window loses a listing, never a key, and issuing users
// costs no disk round trip.
func (s *DirStore) AddUser(_ context.Context, pub string, u User) error {
	r := record{Op: opUser, PublicKey: pub, User: &u}
	line, err := encodeRecord(r)
	if err != nil {
		return fmt.Errorf("keystore: encode user record: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.apply(r); err != nil {
		return err
	}
	// Records written later go after this one: the committer takes the
	// lazy lines before each batch it writes.
	s.lazy = append(s.lazy, line...)
	s.commit.nudge(len(s.lazy))
	return nil
}

// submit hands a checked record to the committer and waits until it is
// durable. Callers hold s.mu for writing; submit releases it.
func (s *DirStore) submit(r record) error {
	s.submitting.Add(1)
	s.mu.Unlock()
	p := s.commit.submit(r)
	s.submitting.Done()
	return p.wait()
}

// apply changes the in-memory state. It runs on the committer, after the
// record is durable, and during replay. Callers hold s.mu for writing.
func (s *DirStore) apply(r record) error {
	switch r.Op {
	case opPut:
		a := *r.Account
		if e, ok := s.accounts[a.PublicKey]; ok {
			e.account = a
		} else {
			s.accounts[a.PublicKey] = newEntry(a)
		}
		s.names[a.Name] = a.PublicKey
		s.release(a)
	case opDelete:
		if e, ok := s.accounts[r.PublicKey]; ok {
			delete(s.names, e.account.Name)
			delete(s.accounts, r.PublicKey)
		}
	case opUser:
		e, ok := s.accounts[r.PublicKey]
		if !ok {
			// The account was deleted between the check and the write.
			return fmt.Errorf("%s: %w", r.PublicKey, ErrNotFound)
		}
		e.addUser(*r.User)
	default:
		return fmt.Errorf("unknown journal operation %q", r.Op)
	}
	return nil
}

// abandon undoes the reservation of a record whose write failed. Callers
// hold s.mu for writing.
func (s *DirStore) abandon(r record) {
	if r.Op == opPut {
		s.release(*r.Account)
	}
}

// release drops the reservation of a put that is applied or failed. With
// several puts of one account in flight, the reservation stays until the
// last.
func (s *DirStore) release(a Account) {
	if s.reserved[a.Name] == a.PublicKey {
		delete(s.reserved, a.Name)
		delete(s.pending, a.PublicKey)
	}
}

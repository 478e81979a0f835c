package filestore

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/natsprov/provisioner/provision"
)

// userRec is one user record and the sequence of the record that wrote
// it, which orders an account's users.
type userRec struct {
	u   provision.User
	seq uint64
}

// entry is the in-memory state of one account. Its Revision is the
// sequence of the record that last wrote it.
type entry struct {
	held
	users  []*userRec
	byName map[string][]*userRec
}

// state is everything the store holds. The loader builds one from the
// files, the store serves reads from it and applies durable records to it.
type state struct {
	accounts map[string]*entry   // account public key -> entry, tombstones included
	names    map[string]string   // name -> public key of the live account that has it
	users    map[string]*userRec // user public key -> record, in whichever account
	seq      uint64              // the last sequence given out
	nusers   int
}

func newState() *state {
	return &state{accounts: map[string]*entry{}, names: map[string]string{}, users: map[string]*userRec{}}
}

// frozen returns what a snapshot of st encodes, apart from st: the
// accounts, each with its users as they are now. Entries are copied, as a
// user record added later appends to (or inserts into) its entry's users;
// the accounts and records themselves are not changed in place but by the
// committer, which is the one that encodes.
func (st *state) frozen() *state {
	out := &state{accounts: make(map[string]*entry, len(st.accounts)), seq: st.seq, nusers: st.nusers}
	for k, e := range st.accounts {
		out.accounts[k] = &entry{held: e.held, users: slices.Clone(e.users)}
	}
	return out
}

// Errors of applying a record the state does not allow. At run time the
// store checks before it writes, so these mean damage when loading.
var (
	errKnownKey  = errors.New("account key already has a record")
	errNameTaken = errors.New("name belongs to another live account")
	errNoAccount = errors.New("no such account")
	errKnownUser = errors.New("user key already has a record")
	errRenamed   = errors.New("account name changed")
)

func (st *state) create(seq uint64, h held) error {
	a := h.a
	if _, ok := st.accounts[a.PublicKey]; ok {
		return errKnownKey
	}
	if a.Live() {
		if _, ok := st.names[a.Name]; ok {
			return errNameTaken
		}
		st.names[a.Name] = a.PublicKey
	}
	h.a.Revision = seq
	st.accounts[a.PublicKey] = &entry{held: h, byName: map[string][]*userRec{}}
	return nil
}

func (st *state) update(seq uint64, h held) error {
	a := h.a
	e, ok := st.accounts[a.PublicKey]
	if !ok {
		return errNoAccount
	}
	if e.a.Name != a.Name {
		return errRenamed
	}
	switch was, now := e.a.Live(), a.Live(); {
	case was && !now:
		delete(st.names, a.Name)
	case !was && now:
		if _, ok := st.names[a.Name]; ok {
			return errNameTaken
		}
		st.names[a.Name] = a.PublicKey
	}
	h.a.Revision = seq
	e.held = h
	return nil
}

func (st *state) remove(pub string) error {
	e, ok := st.accounts[pub]
	if !ok {
		return errNoAccount
	}
	if e.a.Live() && st.names[e.a.Name] == pub {
		delete(st.names, e.a.Name)
	}
	for _, r := range e.users {
		delete(st.users, r.u.PublicKey)
	}
	st.nusers -= len(e.users)
	delete(st.accounts, pub)
	return nil
}

// addUser records a user in its account, in sequence order: a durable
// record waiting for its write can be overtaken by a lazy one.
func (st *state) addUser(seq uint64, u provision.User) error {
	e, ok := st.accounts[u.Account]
	if !ok {
		return errNoAccount
	}
	if _, ok := st.users[u.PublicKey]; ok {
		return errKnownUser
	}
	r := &userRec{u: u, seq: seq}
	e.users = insertBySeq(e.users, r)
	e.byName[u.Name] = insertBySeq(e.byName[u.Name], r)
	st.users[u.PublicKey] = r
	st.nusers++
	return nil
}

func insertBySeq(list []*userRec, r *userRec) []*userRec {
	if n := len(list); n == 0 || list[n-1].seq < r.seq {
		return append(list, r)
	}
	i := sort.Search(len(list), func(i int) bool { return list[i].seq > r.seq })
	return slices.Insert(list, i, r)
}

// applyRecord applies a journal record. Errors mean the record does not
// fit the state before it.
func (st *state) applyRecord(seq uint64, op string, h *held, pub string, u *provision.User) error {
	switch op {
	case opCreate:
		return st.create(seq, *h)
	case opUpdate:
		return st.update(seq, *h)
	case opRemove:
		return st.remove(pub)
	case opUser:
		return st.addUser(seq, *u)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// copyUsers returns copies of a list of records.
func copyUsers(list []*userRec) []provision.User {
	out := make([]provision.User, len(list))
	for i, r := range list {
		out[i] = r.u
	}
	return out
}

// copyAccount returns a copy that shares nothing the caller could change.
func copyAccount(a provision.Account) provision.Account {
	a.SigningKeys = slices.Clone(a.SigningKeys)
	return a
}

// batchView checks the operations of one batch against the state and the
// operations before them in the batch, which are not applied until the
// batch is durable.
type batchView struct {
	st    *state
	accts map[string]*provision.Account // changed in this batch; nil: removed
	names map[string]string             // live names changed in this batch; "": freed
	users map[string]bool               // user keys recorded in this batch
}

func (v *batchView) reset(st *state) {
	v.st = st
	clear(v.accts)
	clear(v.names)
	clear(v.users)
	if v.accts == nil {
		v.accts, v.names, v.users = map[string]*provision.Account{}, map[string]string{}, map[string]bool{}
	}
}

func (v *batchView) account(pub string) (provision.Account, bool) {
	if a, ok := v.accts[pub]; ok {
		if a == nil {
			return provision.Account{}, false
		}
		return *a, true
	}
	e, ok := v.st.accounts[pub]
	if !ok {
		return provision.Account{}, false
	}
	return e.a, true
}

func (v *batchView) nameOwner(name string) (string, bool) {
	if pub, ok := v.names[name]; ok {
		return pub, pub != ""
	}
	pub, ok := v.st.names[name]
	return pub, ok
}

func (v *batchView) userKnown(pub string) bool {
	_, ok := v.st.users[pub]
	return ok || v.users[pub]
}

// check decides whether op may go into the batch at sequence seq, and if
// so records its effect on the view. The errors are the store's answers.
func (v *batchView) check(o *op, seq uint64) error {
	switch o.kind {
	case opCreate:
		a := o.account
		if _, ok := v.account(a.PublicKey); ok {
			return fmt.Errorf("filestore: account %s: key already has a record: %w", a.PublicKey, provision.ErrConflict)
		}
		if o.account.Live() {
			if owner, ok := v.nameOwner(a.Name); ok {
				return fmt.Errorf("filestore: account name %q is taken by %s: %w", a.Name, owner, provision.ErrConflict)
			}
			v.names[a.Name] = a.PublicKey
		}
		a.Revision = seq
		v.accts[a.PublicKey] = &a
	case opUpdate:
		a := o.account
		cur, ok := v.account(a.PublicKey)
		if !ok {
			return fmt.Errorf("filestore: account %s: %w", a.PublicKey, provision.ErrNotFound)
		}
		if cur.Revision != o.rev {
			return fmt.Errorf("filestore: account %s is at revision %d, not %d: %w", a.PublicKey, cur.Revision, o.rev, provision.ErrStale)
		}
		if cur.Name != a.Name {
			return fmt.Errorf("filestore: account %s: name %q cannot change to %q: %w", a.PublicKey, cur.Name, a.Name, provision.ErrInvalid)
		}
		switch was, now := cur.Live(), a.Live(); {
		case was && !now:
			v.names[a.Name] = ""
		case !was && now:
			if owner, ok := v.nameOwner(a.Name); ok {
				return fmt.Errorf("filestore: account name %q is taken by %s: %w", a.Name, owner, provision.ErrConflict)
			}
			v.names[a.Name] = a.PublicKey
		}
		a.Revision = seq
		v.accts[a.PublicKey] = &a
	case opRemove:
		cur, ok := v.account(o.pub)
		if !ok {
			return fmt.Errorf("filestore: account %s: %w", o.pub, provision.ErrNotFound)
		}
		if cur.Revision != o.rev {
			return fmt.Errorf("filestore: account %s is at revision %d, not %d: %w", o.pub, cur.Revision, o.rev, provision.ErrStale)
		}
		if cur.Live() {
			v.names[cur.Name] = ""
		}
		v.accts[o.pub] = nil
	case opUser:
		cur, ok := v.account(o.user.Account)
		if !ok || !cur.Live() {
			return fmt.Errorf("filestore: account %s has no live record: %w", o.user.Account, provision.ErrNotFound)
		}
		if v.userKnown(o.user.PublicKey) {
			return fmt.Errorf("filestore: user %s already has a record: %w", o.user.PublicKey, provision.ErrConflict)
		}
		v.users[o.user.PublicKey] = true
	}
	return nil
}

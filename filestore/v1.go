package filestore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"strings"

	"github.com/natsprov/provisioner/provision"
)

// The previous version's store (package keystore): snapshot.json, the whole
// state as JSON with "version": 1, and journal, lines of
// "<crc32c hex> <json>" with zeroed space after the last one. It is read
// with its own rules: a torn or damaged last line is dropped, damage before
// it is an error.

type v1Account struct {
	Name         string   `json:"name"`
	PublicKey    string   `json:"public_key"`
	IdentitySeed string   `json:"identity_seed"`
	SigningSeeds []string `json:"signing_seeds"`
	JWT          string   `json:"jwt"`
}

type v1User struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
}

type v1Record struct {
	Op        string     `json:"op"`
	PublicKey string     `json:"public_key,omitempty"`
	Account   *v1Account `json:"account,omitempty"`
	User      *v1User    `json:"user,omitempty"`
}

type v1Snapshot struct {
	Version  int `json:"version"`
	Accounts []struct {
		v1Account
		Users []v1User `json:"users,omitempty"`
	} `json:"accounts"`
}

// v1Entry mirrors the previous version's in-memory account: a user key
// issued again replaced its record in place.
// Each record keeps where it was read from, for the message that refuses
// it.
type v1Entry struct {
	a        v1Account
	from     v1From
	users    []v1User
	userFrom []v1From
	byUser   map[string]int
}

// v1From is the file and byte offset a version 1 record was read from (0
// for the snapshot's, which is one JSON document).
type v1From struct {
	file string
	off  int64
}

func (e *v1Entry) addUser(u v1User, from v1From) {
	if i, ok := e.byUser[u.PublicKey]; ok {
		e.users[i], e.userFrom[i] = u, from
		return
	}
	e.byUser[u.PublicKey] = len(e.users)
	e.users = append(e.users, u)
	e.userFrom = append(e.userFrom, from)
}

// loadV1 reads a previous-version store into res.st, with sequences
// given in account order, then user order.
func (l *loader) loadV1(res *loaded, has map[string]bool) error {
	res.fromV1 = map[string]string{}
	accounts := map[string]*v1Entry{}
	if has[v1SnapshotFile] {
		data, err := l.read(v1SnapshotFile)
		if err != nil {
			return err
		}
		res.fromV1[v1SnapshotFile] = fileSum(data)
		var snap v1Snapshot
		if err := json.Unmarshal(data, &snap); err != nil {
			off := int64(0)
			var se *json.SyntaxError
			if errors.As(err, &se) {
				off = se.Offset
			}
			if err := l.damage(v1SnapshotFile, off, "version 1 snapshot does not decode: %v", err); err != nil {
				return err
			}
		} else if snap.Version != 1 {
			return fmt.Errorf("filestore: %s has version %d; this build upgrades version 1", l.path(v1SnapshotFile), snap.Version)
		}
		for _, sa := range snap.Accounts {
			e := &v1Entry{a: sa.v1Account, from: v1From{file: v1SnapshotFile}, byUser: map[string]int{}}
			for _, u := range sa.Users {
				e.addUser(u, v1From{file: v1SnapshotFile})
			}
			accounts[sa.PublicKey] = e
		}
	}
	loadHook(hookV1SnapshotRead)
	if has[v1JournalFile] {
		data, err := l.read(v1JournalFile)
		if err != nil {
			return err
		}
		res.fromV1[v1JournalFile] = fileSum(data)
		if err := l.replayV1(data, accounts); err != nil {
			return err
		}
	}
	// Sequences in a stable order: accounts by public key, then users.
	keys := make([]string, 0, len(accounts))
	for k := range accounts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	st := res.st
	// Version 1 gave an account one signing key, made with it, and signed
	// every user with it: the upgrade records it as their signer. Without
	// it a user is judged by the revocations alone, and after a rotation
	// with revoke_old (which removes the key: the servers refuse them)
	// user.list showed them active, their names stayed taken and they
	// counted against the self-service quota.
	v1Signer := map[string]string{}
	for _, k := range keys {
		e := accounts[k]
		a := provision.Account{
			PublicKey:    e.a.PublicKey,
			Name:         e.a.Name,
			IdentitySeed: provision.Seed(e.a.IdentitySeed),
			JWT:          e.a.JWT,
			Phase:        provision.PhaseLive,
		}
		for _, s := range e.a.SigningSeeds {
			a.SigningKeys = append(a.SigningKeys, provision.SigningKey{Seed: provision.Seed(s)})
		}
		signers, err := checkAccount(&a, true, nil)
		if err != nil {
			if err := l.damage(e.from.file, e.from.off, "version 1 account %s (%q): %v", a.PublicKey, a.Name, err); err != nil {
				return err
			}
			continue
		}
		// Written plain here: Open seals them, as any plain seeds it finds
		// while it has a key.
		d, _ := toDisk(&a, nil, nil)
		for _, seed := range append([]string{d.IdentitySeed}, e.a.SigningSeeds...) {
			if seed != "" {
				l.forms.plain++
				if l.key != nil {
					l.forms.stale++
				}
			}
		}
		if len(signers) == 1 {
			v1Signer[k] = signers[0]
		}
		st.seq++
		if err := st.create(st.seq, held{a: a, disk: d, signers: signers}); err != nil {
			if err := l.damage(e.from.file, e.from.off, "version 1 account %s (%q): %v", a.PublicKey, a.Name, err); err != nil {
				return err
			}
		}
	}
	for _, k := range keys {
		e := accounts[k]
		if _, ok := st.accounts[k]; !ok {
			continue
		}
		for i, u := range e.users {
			from := e.userFrom[i]
			st.seq++
			pu := provision.User{PublicKey: u.PublicKey, Account: k, Name: u.Name, IssuedAt: u.IssuedAt, ExpiresAt: u.ExpiresAt, Signer: v1Signer[k]}
			if err := checkUser(&pu); err != nil {
				err = fmt.Errorf("version 1 user %s of account %s: %v", u.PublicKey, k, err)
				if err := l.damage(from.file, from.off, "%v", err); err != nil {
					return err
				}
				continue
			}
			if err := st.addUser(st.seq, pu); err != nil {
				if err := l.damage(from.file, from.off, "version 1 user %s of account %s: %v", u.PublicKey, k, err); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// replayV1 applies the previous version's journal with its rules.
func (l *loader) replayV1(data []byte, accounts map[string]*v1Entry) error {
	off := 0
	for lineNo := 1; off < len(data); lineNo++ {
		if data[off] == 0 {
			return nil // the zeroed space past the last record
		}
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			l.note("%s: a torn last record (line %d) was dropped, as version 1 did", v1JournalFile, lineNo)
			return nil
		}
		line := data[off : off+nl]
		next := off + nl + 1
		rec, err := decodeV1Record(line)
		if err != nil {
			if next >= len(data) || data[next] == 0 {
				l.note("%s: a damaged last record (line %d) was dropped, as version 1 did", v1JournalFile, lineNo)
				return nil
			}
			if err := l.damage(v1JournalFile, int64(off), "version 1 journal line %d: %v", lineNo, err); err != nil {
				return err
			}
			off = next
			continue
		}
		from := v1From{file: v1JournalFile, off: int64(off)}
		switch rec.Op {
		case "put":
			if e, ok := accounts[rec.Account.PublicKey]; ok {
				e.a, e.from = *rec.Account, from
			} else {
				accounts[rec.Account.PublicKey] = &v1Entry{a: *rec.Account, from: from, byUser: map[string]int{}}
			}
		case "delete":
			delete(accounts, rec.PublicKey)
		case "user":
			// A user of an account deleted at the same moment was
			// refused by version 1 too.
			if e, ok := accounts[rec.PublicKey]; ok {
				e.addUser(*rec.User, from)
			}
		}
		off = next
	}
	return nil
}

func decodeV1Record(line []byte) (v1Record, error) {
	var r v1Record
	sum, body, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(sum) != 8 {
		return r, errors.New("malformed line")
	}
	want, err := hex.DecodeString(string(sum))
	if err != nil || !bytes.Equal(want, binary.BigEndian.AppendUint32(nil, crc32.Checksum(body, castagnoli))) {
		return r, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("does not decode: %v", err)
	}
	switch {
	case r.Op == "put" && r.Account != nil,
		r.Op == "delete" && r.PublicKey != "",
		r.Op == "user" && r.User != nil && r.PublicKey != "":
		return r, nil
	}
	return r, fmt.Errorf("incomplete %q record", strings.ToValidUTF8(r.Op, "?"))
}

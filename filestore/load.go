package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// loader reads a store directory. Strict, for Open, it stops at the first
// damage with an error; otherwise, for Check and Salvage, it records each
// damage in the report and goes on with what is intact.
type loader struct {
	dir    string
	key    *seal.Key
	strict bool
	rep    *Report
	forms  seedForms
	// unchecked counts accounts whose seeds could not be opened (no key,
	// or another key) in a read-only check.
	unchecked int
}

// loaded is what the loader found.
type loaded struct {
	kind    string // formatNew, formatV1 or formatV2
	st      *state
	snapID  uint64
	snapSeq uint64
	// fromV1 holds the checksums of the previous version's files that the
	// state was made from, while they are not yet renamed.
	fromV1 map[string]string

	jpath    string // journal read; "" for none
	jsize    int64
	hdr      slot
	records  int  // journal records applied
	kept     int  // of which past the committed length: never acknowledged
	dirty    bool // something other than zeros past the last record
	fellBack bool // a header slot was unreadable; the older one was used
	useNew   bool // the journal is journal.v2.new: a compaction was cut short

	leftovers []string // ".new" files that are not part of the store
	v1Done    []string // previous-version files an upgrade already holds
}

// Kinds of directory.
const (
	formatNew = "empty"
	formatV1  = "v1"
	formatV2  = "v2"
)

func (l *loader) path(name string) string { return filepath.Join(l.dir, name) }

// damage records damage at an offset of a file. In strict mode it returns
// it as the error that stops the load.
func (l *loader) damage(name string, off int64, format string, args ...any) error {
	d := &Damage{File: l.path(name), Offset: off, What: fmt.Sprintf(format, args...)}
	if l.strict {
		return d
	}
	l.rep.Damage = append(l.rep.Damage, *d)
	return nil
}

func (l *loader) note(format string, args ...any) {
	if l.rep != nil {
		l.rep.Notes = append(l.rep.Notes, fmt.Sprintf(format, args...))
	}
}

func (l *loader) exists(name string) (bool, error) {
	_, err := os.Lstat(l.path(name))
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("filestore: %w", err)
}

func (l *loader) read(name string) ([]byte, error) {
	b, err := os.ReadFile(l.path(name))
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	return b, nil
}

// load reads the directory. It changes nothing: what Open must repair is
// in the result.
func (l *loader) load() (*loaded, error) {
	has := map[string]bool{}
	for _, n := range []string{snapshotFile, journalFile, snapshotFile + newSuffix, journalFile + newSuffix, v1SnapshotFile, v1JournalFile} {
		ok, err := l.exists(n)
		if err != nil {
			return nil, err
		}
		has[n] = ok
	}
	res := &loaded{st: newState()}
	if !has[snapshotFile] && !has[journalFile] {
		// The first snapshot of a store is renamed into place before its
		// journal: without it, nothing of the store was ever acknowledged.
		for _, n := range []string{snapshotFile + newSuffix, journalFile + newSuffix} {
			if has[n] {
				res.leftovers = append(res.leftovers, n)
			}
		}
		if has[v1SnapshotFile] || has[v1JournalFile] {
			res.kind = formatV1
			return res, l.loadV1(res, has)
		}
		res.kind = formatNew
		return res, nil
	}
	res.kind = formatV2
	var hdr *snapshotHeader
	if has[snapshotFile] {
		data, err := l.read(snapshotFile)
		if err != nil {
			return nil, err
		}
		if hdr, err = l.snapshot(res, data); err != nil {
			return nil, err
		}
	} else if err := l.damage(snapshotFile, 0, "the snapshot is missing, and the journal needs it"); err != nil {
		return nil, err
	}
	if err := l.chooseJournal(res, hdr, has); err != nil {
		return nil, err
	}
	if res.jpath != "" {
		data, err := l.read(res.jpath)
		if err != nil {
			return nil, err
		}
		res.jsize = int64(len(data))
		if err := l.journal(res, res.jpath, data, hdr); err != nil {
			return nil, err
		}
	}
	for _, n := range []string{snapshotFile + newSuffix, journalFile + newSuffix} {
		if has[n] && !(n == journalFile+newSuffix && res.useNew) {
			res.leftovers = append(res.leftovers, n)
		}
	}
	return res, l.v1Leftovers(res, hdr, has)
}

// chooseJournal picks the journal that belongs to the snapshot: the
// journal, or journal.v2.new when a compaction stopped between renaming
// its snapshot and its journal into place. That new journal was complete
// before the snapshot was renamed, and the old one holds nothing the new
// snapshot does not.
func (l *loader) chooseJournal(res *loaded, hdr *snapshotHeader, has map[string]bool) error {
	res.jpath = journalFile
	if hdr == nil {
		if !has[journalFile] {
			res.jpath = ""
		}
		return nil
	}
	if has[journalFile] {
		data, err := l.readHead(journalFile)
		if err != nil {
			return err
		}
		if s, _, ok := pickSlot(data); ok && s.snap == res.snapID {
			return nil
		}
	}
	if has[journalFile+newSuffix] {
		data, err := l.readHead(journalFile + newSuffix)
		if err != nil {
			return err
		}
		if s, _, ok := pickSlot(data); ok && s.snap == res.snapID && s.base == res.snapSeq {
			res.jpath, res.useNew = journalFile+newSuffix, true
			l.note("a compaction was cut short after its snapshot was in place; %s is the journal (Open renames it)", journalFile+newSuffix)
			return nil
		}
	}
	if !has[journalFile] {
		res.jpath = ""
		return l.damage(journalFile, 0, "the journal is missing; snapshot %s needs one", formatID(res.snapID))
	}
	return nil // journal() reports how it does not fit
}

// readHead reads a journal's two header slots.
func (l *loader) readHead(name string) ([]byte, error) {
	f, err := os.Open(l.path(name))
	if err != nil {
		return nil, fmt.Errorf("filestore: %w", err)
	}
	defer f.Close()
	b := make([]byte, dataStart)
	n, _ := f.ReadAt(b, 0)
	return b[:n], nil
}

// pickSlot returns the current header slot of a journal: the valid one
// with the greater generation. fellBack reports that the other slot holds
// something that is not a valid header (a torn write of it, or damage), so
// that the older one is in use. A slot that was never written is zeros.
func pickSlot(data []byte) (s slot, fellBack bool, ok bool) {
	var slots [2]slot
	var valid [2]bool
	for i := range 2 {
		lo := i * journalSlotSize
		if lo >= len(data) {
			continue
		}
		b := data[lo:min(lo+journalSlotSize, len(data))]
		if sl, err := decodeSlot(b); err == nil && slotOffset(sl.gen) == int64(lo) {
			slots[i], valid[i] = sl, true
		} else if !allZero(b) {
			fellBack = true
		}
	}
	switch {
	case valid[0] && valid[1]:
		if slots[0].gen > slots[1].gen {
			return slots[0], fellBack, true
		}
		return slots[1], fellBack, true
	case valid[0]:
		return slots[0], fellBack, true
	case valid[1]:
		return slots[1], fellBack, true
	}
	return slot{}, fellBack, false
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// snapshot reads the snapshot into res.st. Every line is checksummed and
// numbered, the first is the header and the last the trailer, which counts
// the lines between: a changed byte, a lost line or a cut is damage.
func (l *loader) snapshot(res *loaded, data []byte) (*snapshotHeader, error) {
	var hdr *snapshotHeader
	var end *snapshotEnd
	var endOff int64
	accounts, users := 0, 0
	off := int64(0)
	for n := uint64(0); off < int64(len(data)); n++ {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			if err := l.damage(snapshotFile, off, "the snapshot is cut: its last line has no end"); err != nil {
				return nil, err
			}
			break
		}
		lineOff := off
		line := data[off : off+int64(nl)]
		off += int64(nl) + 1
		if end != nil {
			if err := l.damage(snapshotFile, lineOff, "data after the snapshot's trailer"); err != nil {
				return nil, err
			}
			break
		}
		seq, body, err := parseFrame(line)
		var sl snapshotLine
		if err == nil {
			if err = json.Unmarshal(body, &sl); err != nil {
				err = fmt.Errorf("line does not decode: %v", err)
			}
		}
		if err != nil {
			if err := l.damage(snapshotFile, lineOff, "%v", err); err != nil {
				return nil, err
			}
			continue
		}
		if seq != n {
			if err := l.damage(snapshotFile, lineOff, "line %d is numbered %d: a line is missing or out of place", n, seq); err != nil {
				return nil, err
			}
		}
		switch {
		case sl.Header != nil:
			if hdr != nil || lineOff != 0 {
				if err := l.damage(snapshotFile, lineOff, "a second header"); err != nil {
					return nil, err
				}
				continue
			}
			h := sl.Header
			if h.Format != formatName || h.Version != formatVersion {
				return nil, fmt.Errorf("filestore: %s is format %q version %d; this build reads %q version %d", l.path(snapshotFile), h.Format, h.Version, formatName, formatVersion)
			}
			id, err := parseID(h.ID)
			if err != nil {
				if err := l.damage(snapshotFile, lineOff, "header: %v", err); err != nil {
					return nil, err
				}
			}
			hdr, res.snapID, res.snapSeq = h, id, h.Seq
			res.st.seq = h.Seq
		case hdr == nil && lineOff == 0:
			if err := l.damage(snapshotFile, 0, "the snapshot has no header"); err != nil {
				return nil, err
			}
		case sl.Account != nil:
			accounts++
			if err := l.snapshotAccount(res, lineOff, sl.Account, sl.Rev); err != nil {
				return nil, err
			}
		case sl.User != nil:
			users++
			if err := l.snapshotUser(res, lineOff, sl.User, sl.Seq); err != nil {
				return nil, err
			}
		case sl.End != nil:
			end, endOff = sl.End, lineOff
		default:
			if err := l.damage(snapshotFile, lineOff, "a line of no known kind"); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case end == nil:
		if err := l.damage(snapshotFile, int64(len(data)), "the snapshot is cut: it has no trailer"); err != nil {
			return nil, err
		}
	case end.Accounts != accounts || end.Users != users:
		if err := l.damage(snapshotFile, endOff, "the trailer counts %d accounts and %d users, the snapshot holds %d and %d", end.Accounts, end.Users, accounts, users); err != nil {
			return nil, err
		}
	}
	return hdr, nil
}

func (l *loader) snapshotAccount(res *loaded, off int64, d *diskAccount, rev uint64) error {
	a, err := l.account(snapshotFile, off, d)
	if err != nil || a == nil {
		return err
	}
	if rev == 0 || (res.snapSeq > 0 && rev > res.snapSeq) {
		return l.damage(snapshotFile, off, "account %s has revision %d, outside the snapshot's sequence %d", d.PublicKey, rev, res.snapSeq)
	}
	if err := res.st.create(rev, *a, *d); err != nil {
		return l.damage(snapshotFile, off, "account %s (%q): %v", d.PublicKey, d.Name, err)
	}
	return nil
}

func (l *loader) snapshotUser(res *loaded, off int64, u *provision.User, seq uint64) error {
	if err := checkUser(u); err != nil {
		return l.damage(snapshotFile, off, "user %s: %v", u.PublicKey, err)
	}
	if seq == 0 || (res.snapSeq > 0 && seq > res.snapSeq) {
		return l.damage(snapshotFile, off, "user %s has sequence %d, outside the snapshot's sequence %d", u.PublicKey, seq, res.snapSeq)
	}
	if err := res.st.addUser(seq, *u); err != nil {
		return l.damage(snapshotFile, off, "user %s of account %s: %v", u.PublicKey, u.Account, err)
	}
	return nil
}

// account opens and checks one account record. It returns nil and no error
// when a lenient load skips it.
func (l *loader) account(file string, off int64, d *diskAccount) (*provision.Account, error) {
	a, err := fromDisk(d, l.key, &l.forms)
	seeds := true
	switch {
	case err == nil:
	case errors.Is(err, errNoKey), errors.Is(err, seal.ErrUnknownKey):
		if l.strict {
			if errors.Is(err, errNoKey) {
				return nil, fmt.Errorf("%w: %s holds sealed seeds (account %s); open it with the seal key that sealed them", ErrSealKey, l.dir, d.PublicKey)
			}
			return nil, fmt.Errorf("%w: account %s in %s: %v", ErrSealKey, d.PublicKey, l.dir, err)
		}
		l.unchecked++
		seeds = false
	default:
		return nil, l.damage(file, off, "account %s (%q): %v", d.PublicKey, d.Name, err)
	}
	if err := checkAccount(&a, seeds); err != nil {
		return nil, l.damage(file, off, "account %s (%q): %v", d.PublicKey, d.Name, err)
	}
	return &a, nil
}

// checkUser checks what a user record must hold.
func checkUser(u *provision.User) error {
	if !nkeys.IsValidPublicUserKey(u.PublicKey) {
		return errors.New("public key is not a user public key (U...)")
	}
	if !nkeys.IsValidPublicAccountKey(u.Account) {
		return errors.New("account is not an account public key (A...)")
	}
	return nil
}

// journal reads the journal's header and replays its records onto the
// snapshot's state. The header says how much is committed: anything wrong
// before that length is damage, while past it a crash may have left a
// batch whose callers got no answer: its valid records are kept, the rest
// is a torn tail. After a failed write the header is marked closed and
// nothing past the committed length is read.
func (l *loader) journal(res *loaded, name string, data []byte, snap *snapshotHeader) error {
	if len(data) < dataStart {
		return l.damage(name, int64(len(data)), "the journal is %d bytes, shorter than its %d-byte header: emptied or cut", len(data), dataStart)
	}
	hdr, fellBack, ok := pickSlot(data)
	if !ok {
		if err := l.damage(name, 0, "neither header slot of the journal is valid"); err != nil {
			return err
		}
		// Read on as if nothing were committed, to salvage what is there.
		hdr = slot{snap: res.snapID, base: res.snapSeq, seq: res.snapSeq, end: dataStart}
	}
	if fellBack {
		res.fellBack = true
		l.note("%s: one header slot is unreadable (a write of it torn by a crash, or damage); the other is in use", name)
	}
	if snap != nil && (hdr.snap != res.snapID || hdr.base != res.snapSeq) {
		if err := l.damage(name, slotOffset(hdr.gen), "the journal belongs to snapshot %s at sequence %d, the snapshot is %s at %d", formatID(hdr.snap), hdr.base, formatID(res.snapID), res.snapSeq); err != nil {
			return err
		}
		// Replay on what the snapshot holds anyway, for a salvage.
		hdr.base = res.snapSeq
	}
	res.hdr = hdr
	end := hdr.end
	expect := hdr.base + 1
	off := int64(dataStart)
	resync := false // after a hole, the first fragment is not reported again
	for off < int64(len(data)) {
		committed := off < end
		if data[off] == 0 {
			if !committed {
				break
			}
			if err := l.damage(name, off, "zero bytes where committed records should be (a hole, or the journal was cut); %d bytes are committed", end); err != nil {
				return err
			}
			nz := bytes.IndexFunc(data[off:], func(r rune) bool { return r != 0 })
			if nz < 0 {
				off = int64(len(data))
				break
			}
			off += int64(nz)
			resync = true
			continue
		}
		nl := bytes.IndexByte(data[off:], '\n')
		lineEnd := int64(len(data))
		if nl >= 0 {
			lineEnd = off + int64(nl)
		}
		seq, rec, err := decodeJournalRecord(data[off:lineEnd], nl >= 0)
		if err != nil {
			if !committed {
				break
			}
			if !resync {
				if err := l.damage(name, off, "%v", err); err != nil {
					return err
				}
			}
			resync = false
			if nl < 0 {
				off = int64(len(data))
				break
			}
			off = lineEnd + 1
			continue
		}
		resync = false
		if committed && lineEnd+1 > end {
			if err := l.damage(name, off, "a record crosses the committed length %d", end); err != nil {
				return err
			}
		}
		if seq != expect {
			if !committed {
				break
			}
			if err := l.damage(name, off, "record has sequence %d where %d was expected", seq, expect); err != nil {
				return err
			}
			if seq < expect {
				off = lineEnd + 1
				continue
			}
		}
		if !committed {
			if hdr.closed {
				break
			}
			res.kept++
		}
		if err := l.apply(res, name, off, seq, rec); err != nil {
			return err
		}
		res.records++
		expect = seq + 1
		off = lineEnd + 1
		if off == end && seq != hdr.seq {
			if err := l.damage(name, off, "the header's last committed record is %d, the journal's is %d", hdr.seq, seq); err != nil {
				return err
			}
		}
	}
	if off < end {
		if err := l.damage(name, off, "the journal is cut: its records end at byte %d, its header says %d bytes are committed", off, end); err != nil {
			return err
		}
	}
	res.dirty = !allZero(data[min(off, int64(len(data))):])
	return nil
}

// decodeJournalRecord checks and decodes one journal line.
func decodeJournalRecord(line []byte, whole bool) (uint64, *journalRecord, error) {
	if !whole {
		return 0, nil, errors.New("the last record has no end")
	}
	seq, body, err := parseFrame(line)
	if err != nil {
		return 0, nil, err
	}
	var r journalRecord
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, nil, fmt.Errorf("record does not decode: %v", err)
	}
	switch {
	case (r.Op == opCreate || r.Op == opUpdate) && r.Account != nil,
		r.Op == opRemove && r.PublicKey != "",
		r.Op == opUser && r.User != nil:
		return seq, &r, nil
	}
	return 0, nil, fmt.Errorf("incomplete %q record", r.Op)
}

// apply applies one journal record to the state.
func (l *loader) apply(res *loaded, name string, off int64, seq uint64, r *journalRecord) error {
	var a *provision.Account
	if r.Account != nil {
		var err error
		if a, err = l.account(name, off, r.Account); err != nil || a == nil {
			return err
		}
	}
	if r.User != nil {
		if err := checkUser(r.User); err != nil {
			return l.damage(name, off, "user %s: %v", r.User.PublicKey, err)
		}
	}
	err := res.st.applyRecord(seq, r.Op, a, r.Account, r.PublicKey, r.User)
	if err == nil {
		res.st.seq = max(res.st.seq, seq)
		return nil
	}
	what := r.PublicKey
	switch {
	case r.Account != nil:
		what = fmt.Sprintf("account %s (%q)", r.Account.PublicKey, r.Account.Name)
	case r.User != nil:
		what = fmt.Sprintf("user %s of account %s", r.User.PublicKey, r.User.Account)
	default:
		what = "account " + what
	}
	if derr := l.damage(name, off, "record %d (%s of %s) does not fit the state before it: %v", seq, r.Op, what, err); derr != nil {
		return derr
	}
	// A salvage keeps an update whose account's earlier records are lost:
	// the update holds the whole account.
	if r.Op == opUpdate && errors.Is(err, errNoAccount) {
		if res.st.create(seq, *a, *r.Account) == nil {
			l.note("account %s (%q) is kept from its update at sequence %d; its earlier records are lost", r.Account.PublicKey, r.Account.Name, seq)
		}
	}
	res.st.seq = max(res.st.seq, seq)
	return nil
}

// v1Leftovers handles previous-version files beside a v2 store. An upgrade
// renames them once the v2 store is in place, and records their checksums
// in its snapshot, so that files it already holds are renamed to finish
// it; others mean two stores in one directory, which Open refuses.
func (l *loader) v1Leftovers(res *loaded, hdr *snapshotHeader, has map[string]bool) error {
	for _, n := range []string{v1SnapshotFile, v1JournalFile} {
		if !has[n] {
			continue
		}
		data, err := l.read(n)
		if err != nil {
			return err
		}
		if hdr != nil && hdr.FromV1[n] == fileSum(data) {
			res.v1Done = append(res.v1Done, n)
			res.fromV1 = hdr.FromV1
			l.note("%s was upgraded but not yet renamed to %s (Open renames it)", n, n+v1BackupSuffix)
			continue
		}
		err = fmt.Errorf("filestore: %s holds a version 2 store and a version 1 file %s that it was not made from; move one of them away", l.dir, n)
		if l.strict {
			return err
		}
		l.note("%v", err)
	}
	return nil
}

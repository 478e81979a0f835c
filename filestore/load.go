package filestore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

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
	// unchecked counts accounts whose sealed seeds could not be opened
	// for want of a key in a read-only check.
	unchecked int
	// otherKey counts accounts whose seeds the given key did not seal: a
	// start with that key refuses them (ErrSealKey).
	otherKey int
	// lock is what the lock file showed before this load (for Open,
	// before Open wrote it): lockHeld tells a directory that held a store
	// from a new one.
	lock lockState
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
	kept     int  // of which past the committed length: the last batch, maybe answered
	dirty    bool // something other than zeros past the last record
	fellBack bool // a header slot was unreadable; the older one was used
	useNew   bool // the journal is journal.v2.new: a compaction was cut short
	// recEnd and recSeq are where the records read end (the next record
	// goes there) and the sequence of the last; tailEnd is where the
	// bytes past them that are not zeros end (recEnd when dirty is not
	// set).
	recEnd  int64
	recSeq  uint64
	tailEnd int64

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

// loadHook runs between the reads of a load, so that a test can change the
// files under a reader, as a store that runs does.
var loadHook = func(step string) {}

// hookSnapshotRead: the snapshot is read, the journal not yet.
const hookSnapshotRead = "snapshot-read"

// hookV1SnapshotRead: a version 1 store's snapshot.json is read (or found
// absent), its journal not yet.
const hookV1SnapshotRead = "v1-snapshot-read"

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
		return res, l.vanished(has)
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
		loadHook(hookSnapshotRead)
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

// vanished decides whether a directory without snapshot and journal is new,
// or held a store whose files are gone: a wrong directory or volume, or a
// restore that left them out. Opened empty, such a store would serve as
// if no account had ever been made: the accounts on the servers would be
// orphans that no one can change, revoke users of or delete (the
// reconciler leaves orphans alone), their names free for new accounts with
// other keys, and the files, put back later, would lose what was made
// meanwhile. So it is damage, unless nothing of a store is there: no lock
// file that an Open finished with (a marked or empty one is a first Open's
// that did not finish, see lockNewMark), no previous version's files kept
// by an upgrade, no generation left half-written but a first one at
// sequence 0, which holds nothing.
func (l *loader) vanished(has map[string]bool) error {
	if has[snapshotFile+newSuffix] {
		if seq, ok := l.newSnapshotSeq(); ok && seq == 0 {
			return nil // the first generation, cut short: nothing was acknowledged
		}
		// An empty new snapshot beside a marked lock file is a first Open
		// killed as it began to write its snapshot: Open claims the lock
		// file before it writes a generation of a store that holds state
		// (and Salvage's copy, cut short so, was never a store).
		if l.lock == lockNew && !has[journalFile+newSuffix] && l.empty(snapshotFile+newSuffix) {
			return nil
		}
	}
	var signs []string
	if l.lock == lockHeld {
		signs = append(signs, "its lock file")
	}
	for _, n := range []string{snapshotFile + newSuffix, journalFile + newSuffix} {
		if has[n] {
			signs = append(signs, n)
		}
	}
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("filestore: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, v1SnapshotFile+v1BackupSuffix) || strings.HasPrefix(n, v1JournalFile+v1BackupSuffix) {
			signs = append(signs, n)
		}
	}
	if len(signs) == 0 {
		return nil
	}
	return l.damage(snapshotFile, 0, "%s and %s are missing, but the directory held a store (it has %s): a wrong directory or volume, or a restore that left them out. Put them back from a backup; to start an empty store here on purpose, move everything out of %s first", snapshotFile, journalFile, strings.Join(signs, ", "), l.dir)
}

// empty reports whether the file is there and holds nothing.
func (l *loader) empty(name string) bool {
	fi, err := os.Lstat(l.path(name))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == 0
}

// newSnapshotSeq returns the sequence in the header of snapshot.v2.new,
// when its first line is a valid header.
func (l *loader) newSnapshotSeq() (uint64, bool) {
	data, err := os.ReadFile(l.path(snapshotFile + newSuffix))
	if err != nil {
		return 0, false
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return 0, false
	}
	n, body, err := parseFrame(data[:nl])
	var sl snapshotLine
	if err != nil || n != 0 || json.Unmarshal(body, &sl) != nil || sl.Header == nil {
		return 0, false
	}
	return sl.Header.Seq, true
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
// the lines between: a changed byte, a lost line or a cut is damage. The
// lines are parsed first, their accounts' seeds checked in parallel, then
// applied in order.
func (l *loader) snapshot(res *loaded, data []byte) (*snapshotHeader, error) {
	type item struct {
		off  int64
		line snapshotLine
	}
	var items []item
	var hdr *snapshotHeader
	var end *snapshotEnd
	var endOff int64
	accounts, users, bad := 0, 0, 0
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
			bad++
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
			items = append(items, item{lineOff, sl})
		case sl.User != nil:
			users++
			items = append(items, item{lineOff, sl})
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
	case bad == 0 && (end.Accounts != accounts || end.Users != users),
		end.Accounts+end.Users != accounts+users+bad:
		if err := l.damage(snapshotFile, endOff, "the trailer counts %d accounts and %d users, the snapshot holds %d and %d", end.Accounts, end.Users, accounts, users); err != nil {
			return nil, err
		}
	}

	// Opening sealed seeds and deriving keys is most of the work of a
	// load: spread it over the processors.
	var ds []*diskAccount
	for _, it := range items {
		if it.line.Account != nil {
			ds = append(ds, it.line.Account)
		}
	}
	checked := l.openAll(ds)
	for _, it := range items {
		var err error
		if it.line.Account != nil {
			err = l.snapshotAccount(res, it.off, it.line.Account, it.line.Rev, checked[0])
			checked = checked[1:]
		} else {
			err = l.snapshotUser(res, it.off, it.line.User, it.line.Seq)
		}
		if err != nil {
			return nil, err
		}
	}
	return hdr, nil
}

func (l *loader) snapshotAccount(res *loaded, off int64, d *diskAccount, rev uint64, o opened) error {
	h, err := l.accept(snapshotFile, off, d, o)
	if err != nil || h == nil {
		return err
	}
	if rev == 0 || (res.snapSeq > 0 && rev > res.snapSeq) {
		return l.damage(snapshotFile, off, "account %s has revision %d, outside the snapshot's sequence %d", d.PublicKey, rev, res.snapSeq)
	}
	if err := res.st.create(rev, *h); err != nil {
		return l.damage(snapshotFile, off, "account %s (%q): %v", d.PublicKey, d.Name, err)
	}
	// The sequence goes on past every revision held, should the header
	// that gives it be lost (a salvage reads past it): from 0, the next
	// change made an account's revision go backwards, and a snapshot of
	// that state, its sequence below the revisions, did not open.
	res.st.seq = max(res.st.seq, rev)
	return nil
}

func (l *loader) snapshotUser(res *loaded, off int64, u *provision.User, seq uint64) error {
	if seq == 0 || (res.snapSeq > 0 && seq > res.snapSeq) {
		return l.damage(snapshotFile, off, "user %s has sequence %d, outside the snapshot's sequence %d", u.PublicKey, seq, res.snapSeq)
	}
	if err := res.st.addUser(seq, *u); err != nil {
		return l.damage(snapshotFile, off, "user %s of account %s: %v", u.PublicKey, u.Account, err)
	}
	res.st.seq = max(res.st.seq, seq) // as for an account's revision
	return nil
}

// opened is an account record with its seeds opened and checked.
type opened struct {
	a       provision.Account
	signers []string
	forms   seedForms
	openErr error // from opening the seeds
	err     error // from checking them
}

// open opens and checks one account record. It changes nothing of the
// loader, so that records can be opened in parallel.
func (l *loader) open(d *diskAccount) opened {
	var o opened
	o.a, o.openErr = fromDisk(d, l.key, &o.forms)
	seeds := o.openErr == nil
	if o.openErr == nil || errors.Is(o.openErr, errNoKey) || errors.Is(o.openErr, seal.ErrUnknownKey) {
		o.signers, o.err = checkAccount(&o.a, seeds, nil)
	}
	return o
}

// openAll opens records on every processor, and returns them in order.
func (l *loader) openAll(ds []*diskAccount) []opened {
	out := make([]opened, len(ds))
	workers := min(runtime.GOMAXPROCS(0), len(ds)/64+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(ds); i += workers {
				out[i] = l.open(ds[i])
			}
		})
	}
	wg.Wait()
	return out
}

// accept takes an opened account record in: it returns the account as
// held, or reports why not. It returns nil and no error when a lenient
// load skips the record.
func (l *loader) accept(file string, off int64, d *diskAccount, o opened) (*held, error) {
	l.forms.plain += o.forms.plain
	l.forms.sealed += o.forms.sealed
	l.forms.stale += o.forms.stale
	switch {
	case o.openErr == nil:
	case errors.Is(o.openErr, errNoKey), errors.Is(o.openErr, seal.ErrUnknownKey):
		if l.strict {
			if errors.Is(o.openErr, errNoKey) {
				return nil, fmt.Errorf("%w: %s holds sealed seeds (account %s); open it with the seal key that sealed them", ErrSealKey, l.dir, d.PublicKey)
			}
			// The usual cause, a seal_key rotated without listing the
			// old one, is said as the KV store says it.
			return nil, fmt.Errorf("%w: account %s in %s: %v; a seal key rotated away must be given as a previous key (seal_key_previous)", ErrSealKey, d.PublicKey, l.dir, o.openErr)
		}
		if errors.Is(o.openErr, seal.ErrUnknownKey) {
			l.otherKey++
		} else {
			l.unchecked++
		}
	default:
		return nil, l.damage(file, off, "account %s (%q): %v", d.PublicKey, d.Name, o.openErr)
	}
	if o.err != nil {
		return nil, l.damage(file, off, "account %s (%q): %v", d.PublicKey, d.Name, o.err)
	}
	return &held{a: o.a, disk: *d, signers: o.signers}, nil
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
	noHeader := false // no header counts the records: its last sequence is unknown
	if !ok {
		if err := l.damage(name, 0, "neither header slot of the journal is valid"); err != nil {
			return err
		}
		// Read on as if everything written were committed, to salvage
		// what is there: read as past the committed length, the first
		// damaged record would end the read, and the intact records after
		// it would be neither copied nor checked.
		hdr = slot{snap: res.snapID, base: res.snapSeq, seq: res.snapSeq, end: dataStart}
		for i := int64(len(data)); i > dataStart; i-- {
			if data[i-1] != 0 {
				hdr.end = i
				break
			}
		}
		noHeader = true
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
	pre := l.openJournalAccounts(data)
	end := hdr.end
	expect := hdr.base + 1
	off := int64(dataStart)
	resync := false // after a hole, the first fragment is not reported again
	lost := false   // records were lost to damage: a gap in sequence is expected
	for off < int64(len(data)) {
		committed := off < end
		if data[off] == 0 {
			if !committed {
				break
			}
			if err := l.damage(name, off, "zero bytes where committed records should be (a hole, or the journal was cut); %d bytes are committed", end); err != nil {
				return err
			}
			lost = true
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
			resync, lost = false, true
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
			if !lost || seq < expect {
				if err := l.damage(name, off, "record has sequence %d where %d was expected", seq, expect); err != nil {
					return err
				}
			}
			if seq < expect {
				off = lineEnd + 1
				continue
			}
		}
		lost = false
		if !committed {
			if hdr.closed {
				break
			}
			res.kept++
		}
		if err := l.apply(res, name, off, seq, rec, pre); err != nil {
			return err
		}
		res.records++
		expect = seq + 1
		off = lineEnd + 1
		if off == end && seq != hdr.seq && !noHeader {
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
	res.recEnd, res.recSeq, res.tailEnd = off, expect-1, off
	for i := int64(len(data)); i > off; i-- {
		if data[i-1] != 0 {
			res.tailEnd = i
			break
		}
	}
	return nil
}

// openJournalAccounts opens and checks, in parallel, the account records
// of a journal that read as whole lines, by offset, for the replay.
func (l *loader) openJournalAccounts(data []byte) map[int64]opened {
	var offs []int64
	var ds []*diskAccount
	for off := int64(dataStart); off < int64(len(data)) && data[off] != 0; {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			break
		}
		if _, r, err := decodeJournalRecord(data[off:off+int64(nl)], true); err == nil && r.Account != nil {
			offs, ds = append(offs, off), append(ds, r.Account)
		}
		off += int64(nl) + 1
	}
	out := make(map[int64]opened, len(offs))
	for i, o := range l.openAll(ds) {
		out[offs[i]] = o
	}
	return out
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
func (l *loader) apply(res *loaded, name string, off int64, seq uint64, r *journalRecord, pre map[int64]opened) error {
	var h *held
	if r.Account != nil {
		o, ok := pre[off]
		if !ok {
			o = l.open(r.Account)
		}
		var err error
		if h, err = l.accept(name, off, r.Account, o); err != nil || h == nil {
			return err
		}
	}
	if r.User != nil && (r.User.PublicKey == "" || r.User.Account == "") {
		return l.damage(name, off, "user record without a key or account")
	}
	err := res.st.applyRecord(seq, r.Op, h, r.PublicKey, r.User)
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
		if res.st.create(seq, *h) == nil {
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
		if l.rep != nil {
			l.rep.Refused = append(l.rep.Refused, err.Error())
		}
	}
	return nil
}

package filestore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// Report is what Check found in a store, or what Salvage copied.
type Report struct {
	Dir string `json:"dir"`
	// Format is "v2", "v1" (a previous version's store, which Open
	// upgrades) or "empty".
	Format string `json:"format"`
	// Snapshot is the ID of the snapshot; Seq the store's sequence.
	Snapshot string `json:"snapshot,omitempty"`
	Seq      uint64 `json:"seq"`
	// Accounts counts accounts by phase ("live" includes the empty phase).
	Accounts map[provision.Phase]int `json:"accounts"`
	Users    int                     `json:"users"`
	// Records is how many journal records there are on top of the
	// snapshot; Unacknowledged how many of them lie past the header's
	// committed length: the last batch before a crash, whose header was
	// not flushed yet. Its callers had their answer if its records' flush
	// had finished, and none otherwise; Open keeps them. (The name is the
	// one this field has always had in the JSON.)
	Records        int `json:"records"`
	Unacknowledged int `json:"unacknowledged"`
	// Damage lists every damage found, in the order found.
	Damage []Damage `json:"damage,omitempty"`
	// Refused lists what a start refuses that is not damage in a file:
	// two stores in one directory (a version 1 file beside a version 2
	// store not made from it).
	Refused []string `json:"refused,omitempty"`
	// Notes say what is not damage but worth knowing: a torn tail, a
	// compaction or upgrade cut short that Open finishes, seeds that could
	// not be checked for want of the seal key, an owner running.
	Notes []string `json:"notes,omitempty"`
}

// Damaged reports whether any damage was found.
func (r *Report) Damaged() bool { return len(r.Damage) > 0 }

// Refuses reports whether a start refuses the store: it is damaged, or
// holds what a start refuses besides (Refused).
func (r *Report) Refuses() bool { return r.Damaged() || len(r.Refused) > 0 }

// WriteTo prints the report for a person.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "store     %s\n", r.Dir)
	fmt.Fprintf(&b, "format    %s\n", r.Format)
	if r.Snapshot != "" {
		fmt.Fprintf(&b, "snapshot  %s\n", r.Snapshot)
	}
	fmt.Fprintf(&b, "sequence  %d\n", r.Seq)
	phases := make([]string, 0, len(r.Accounts))
	total := 0
	for _, p := range []provision.Phase{provision.PhaseLive, provision.PhaseDisabled, provision.PhaseDeleted} {
		phases = append(phases, fmt.Sprintf("%d %s", r.Accounts[p], p))
		total += r.Accounts[p]
	}
	fmt.Fprintf(&b, "accounts  %d (%s)\n", total, strings.Join(phases, ", "))
	fmt.Fprintf(&b, "users     %d\n", r.Users)
	fmt.Fprintf(&b, "journal   %d records on the snapshot, %d of them past the header's committed length (kept)\n", r.Records, r.Unacknowledged)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note      %s\n", n)
	}
	if len(r.Damage) == 0 {
		b.WriteString("damage    none\n")
	}
	for _, d := range r.Damage {
		fmt.Fprintf(&b, "DAMAGE    %s at byte %d: %s\n", d.File, d.Offset, d.What)
	}
	for _, x := range r.Refused {
		fmt.Fprintf(&b, "REFUSED   %s\n", x)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func (r *Report) count(res *loaded) {
	r.Format = res.kind
	if res.snapID != 0 {
		r.Snapshot = formatID(res.snapID)
	}
	r.Seq = res.st.seq
	r.Accounts = map[provision.Phase]int{}
	for _, e := range res.st.accounts {
		p := e.a.Phase
		if p == "" {
			p = provision.PhaseLive
		}
		r.Accounts[p]++
	}
	r.Users = res.st.nusers
	r.Records, r.Unacknowledged = res.records, res.kept
}

// Check reads the store in dir without changing it, and without the lock:
// it can look at a store a running service has open. It reports what the
// store holds and every damage it finds, going on past damage where it
// can. With no seal key, sealed seeds are not checked (a note says so).
// The error is for a directory that cannot be read at all; damage is in
// the report.
func Check(dir string, key *seal.Key) (Report, error) {
	if st, err := os.Stat(dir); err != nil {
		return Report{Dir: dir}, fmt.Errorf("filestore: %w", err)
	} else if !st.IsDir() {
		return Report{Dir: dir}, fmt.Errorf("filestore: %s is not a directory", dir)
	}
	rep, _, err := checkSettled(dir, key)
	return rep, explainPermission(dir, err)
}

// checkSettled is check, read again when it found damage or an error while
// the owner runs: between the reads of a load a running store may have
// compacted (the old snapshot then meets the new generation's journal, or
// a file read is gone), which looks like damage the store does not have.
// Check and Salvage both read through it: a salvage that took such a read
// for the store would copy the old snapshot without the records beside
// it, and report damage that a person would then act on. A version 1
// store is read again when its snapshot.json changed during the read, as
// openRead does (v1ReadAgain).
func checkSettled(dir string, key *seal.Key) (Report, *loaded, error) {
	for attempt := 0; ; attempt++ {
		rep, res, err := check(dir, key)
		if err == nil {
			// A version 1 store that provisioner 0.1 serves shows no
			// owner (ownerRunning), and its compaction between the two
			// reads looks like no damage at all: only what snapshot.json
			// now holds tells.
			if again, verr := v1ReadAgain(dir, res, attempt); verr != nil {
				return rep, nil, verr
			} else if again {
				continue
			}
		}
		pid, running := ownerRunning(dir)
		if (err == nil && !rep.Damaged()) || !running || attempt >= 2 {
			if running {
				rep.Notes = append(rep.Notes, fmt.Sprintf("process %d has the store open: the check read it while it runs", pid))
			}
			return rep, res, err
		}
		// The owner may have been between the steps of a compaction: look
		// again before calling it damage.
		time.Sleep(50 * time.Millisecond)
	}
}

func check(dir string, key *seal.Key) (Report, *loaded, error) {
	rep := Report{Dir: dir}
	l := &loader{dir: dir, key: key, rep: &rep}
	var err error
	if l.lock, err = readLock(dir); err != nil {
		return rep, nil, err
	}
	res, err := l.load()
	if err != nil {
		return rep, nil, err
	}
	rep.count(res)
	for _, n := range res.leftovers {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s is left from a generation never put in place (Open removes it)", n))
	}
	if key != nil && l.forms.stale > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d seeds are plain or sealed with a previous key; Open with this seal key seals them", l.forms.stale))
	}
	if l.otherKey > 0 {
		// Not damage (the records are whole), but what a start with this
		// key does: refuse the store.
		rep.Refused = append(rep.Refused, fmt.Sprintf("the seeds of %d accounts are sealed with another seal key than the one given, and were not checked: a start with it refuses the store", l.otherKey))
	}
	if l.unchecked > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the seeds of %d accounts are sealed with a key not given, and were not checked", l.unchecked))
	}
	if n := res.tornTail(); n != "" {
		rep.Notes = append(rep.Notes, n)
	}
	return rep, res, nil
}

// Salvage copies every intact record of the store in dir into a new store
// in to, which must not exist or be empty, and reports what it read (the
// damage it went past) and what it copied. Within the committed length it
// goes past damage to the intact records after it; past it (the last
// batch, its header slot's write torn or unreadable) it stops at the first
// record that does not read, as Open does: a crash can persist a write's
// pages out of order, so a record after a torn one is no proof. There the
// records after a damaged one are not copied, though with the current
// header slot unreadable they may be of an answered batch: the report's
// note on the torn tail says so. It never changes dir; a person
// decides what to do with the copy. Seeds are copied as they are on disk:
// sealed ones stay sealed, and without the key they are not checked. A
// store that runs is read as Check reads it, again when a read met a
// compaction halfway; the copy holds what the store held then.
func Salvage(dir, to string, key *seal.Key) (Report, error) {
	absFrom, err := filepath.Abs(dir)
	if err != nil {
		return Report{Dir: dir}, fmt.Errorf("filestore: %w", err)
	}
	absTo, err := filepath.Abs(to)
	if err != nil {
		return Report{Dir: dir}, fmt.Errorf("filestore: %w", err)
	}
	if absFrom == absTo {
		return Report{Dir: dir}, fmt.Errorf("filestore: salvage into the store itself (%s); give a new directory", to)
	}
	if err := emptyDir(to); err != nil {
		return Report{Dir: dir}, err
	}
	if st, err := os.Stat(dir); err != nil {
		return Report{Dir: dir}, fmt.Errorf("filestore: %w", err)
	} else if !st.IsDir() {
		return Report{Dir: dir}, fmt.Errorf("filestore: %s is not a directory", dir)
	}
	rep, res, err := checkSettled(dir, key)
	if err != nil {
		return rep, err
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return rep, fmt.Errorf("filestore: create %s: %w", to, err)
	}
	if err := os.Chmod(to, 0o700); err != nil {
		return rep, fmt.Errorf("filestore: chmod %s: %w", to, err)
	}
	lock, _, err := lockDir(to)
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	id, err := newID()
	if err != nil {
		return rep, err
	}
	data, err := encodeSnapshot(res.st, id, nil)
	if err != nil {
		return rep, err
	}
	j, _, err := writeGeneration(to, data, id, res.st.seq)
	if err != nil {
		return rep, err
	}
	if err := j.close(); err != nil {
		return rep, fmt.Errorf("filestore: %w", err)
	}
	// The copy holds state: its lock file says so from here, as Open's
	// does once it has made a store.
	if err := unmarkLock(lock, to); err != nil {
		return rep, err
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("copied %d accounts and %d users into %s (snapshot %s)", len(res.st.accounts), res.st.nusers, to, formatID(id)))
	return rep, nil
}

// emptyDir checks that dir does not exist or is an empty directory.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("filestore: salvage target: %w", err)
	}
	if len(entries) > 0 {
		names := make([]string, 0, 3)
		for _, e := range entries[:min(3, len(entries))] {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		return fmt.Errorf("filestore: salvage target %s is not empty (holds %s); give a new directory", dir, strings.Join(names, ", "))
	}
	return nil
}

// tornTail says what a torn tail the journal has, for Check's report and
// Open's log, or "" when it has none. A torn tail after records kept past
// the committed length is left out all the same: the operator is told in
// both cases. Past an older header slot (the current one unreadable) the
// tail may hold a batch that was answered: its header was written, in the
// unreadable slot.
func (res *loaded) tornTail() string {
	switch {
	case res.dirty && res.fellBack:
		return fmt.Sprintf("the journal has a torn tail after the %d records kept past the older header slot's committed length; it may hold changes that were answered (the unreadable slot counted them), and Open leaves it out", res.kept)
	case res.dirty && res.kept == 0:
		return "the journal has a torn tail past its committed records (never acknowledged; Open leaves it out)"
	case res.dirty:
		return fmt.Sprintf("the journal has a torn tail after the %d records kept past its committed length (a write a crash cut short, or damage to the last batch; Open leaves it out)", res.kept)
	}
	return ""
}

package filestore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"

	"github.com/natsprov/provisioner/provision"
)

// The files of a store. Only the snapshot and the journal hold state; the
// ".new" names exist while a new generation is being written, and the
// lock file holds the owner's process ID (and a mark while a new store is
// made: lockfile.go).
const (
	snapshotFile    = "snapshot.v2"
	journalFile     = "journal.v2"
	newSuffix       = ".new"
	lockFile        = "lock"
	v1SnapshotFile  = "snapshot.json"
	v1JournalFile   = "journal"
	v1BackupSuffix  = ".v1"
	formatName      = "natsprov filestore"
	formatVersion   = 2
	journalSlotSize = 4096
	// dataStart is where the journal's records begin, past its two header
	// slots. Each slot has a page of its own, so that a torn write of one
	// cannot touch the other.
	dataStart = 2 * journalSlotSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// A record, in the journal and in the snapshot, is one line:
//
//	<crc32c, 8 hex digits> <sequence, 16 hex digits> <JSON>\n
//
// The checksum covers the sequence and the JSON. JSON never holds a raw
// newline, so a reader that meets a bad line can find the next one.
const (
	crcLen      = 8
	seqLen      = 16
	frameHead   = crcLen + 1 + seqLen + 1
	minFrameLen = frameHead + 2 + 1 // "{}" and the newline
)

// appendFrame appends one record line to dst.
func appendFrame(dst []byte, seq uint64, body []byte) []byte {
	start := len(dst)
	dst = append(dst, "00000000 "...)
	dst = appendHex64(dst, seq)
	dst = append(dst, ' ')
	dst = append(dst, body...)
	sum := crc32.Checksum(dst[start+crcLen+1:], castagnoli)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], sum)
	hex.Encode(dst[start:start+crcLen], b[:])
	return append(dst, '\n')
}

func appendHex64(dst []byte, v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.AppendEncode(dst, b[:])
}

// parseFrame checks one line, without its newline, and returns its
// sequence and JSON. The errors say what is wrong, never what the line
// holds.
func parseFrame(line []byte) (uint64, []byte, error) {
	if len(line) < minFrameLen-1 || line[crcLen] != ' ' || line[frameHead-1] != ' ' {
		return 0, nil, errors.New("not a record line")
	}
	var want [4]byte
	if _, err := hex.Decode(want[:], line[:crcLen]); err != nil || !isLowerHex(line[:crcLen]) {
		return 0, nil, errors.New("record checksum is not hexadecimal")
	}
	if binary.BigEndian.Uint32(want[:]) != crc32.Checksum(line[crcLen+1:], castagnoli) {
		return 0, nil, errors.New("record checksum mismatch")
	}
	seqHex := line[crcLen+1 : frameHead-1]
	if !isLowerHex(seqHex) {
		return 0, nil, errors.New("record sequence is not hexadecimal")
	}
	seq, err := strconv.ParseUint(string(seqHex), 16, 64)
	if err != nil {
		return 0, nil, errors.New("record sequence is not hexadecimal")
	}
	return seq, line[frameHead:], nil
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// diskSigningKey is a signing key as written: its seed sealed when the
// store has a seal key.
type diskSigningKey struct {
	Seed    string `json:"seed"`
	Role    string `json:"role,omitempty"`
	Retired bool   `json:"retired,omitempty"`
}

// diskAccount is an account as written. Seeds are sealed ("xkv1:...")
// when the store has a seal key, plain otherwise.
type diskAccount struct {
	PublicKey    string           `json:"public_key"`
	Name         string           `json:"name"`
	IdentitySeed string           `json:"identity_seed,omitempty"`
	SigningKeys  []diskSigningKey `json:"signing_keys,omitempty"`
	JWT          string           `json:"jwt"`
	Phase        provision.Phase  `json:"phase"`
	DeletedAt    int64            `json:"deleted_at,omitempty"`
	// Settings are the service's own settings of the account.
	Settings provision.AccountSettings `json:"settings,omitzero"`
}

// Journal operations.
const (
	opCreate = "create"
	opUpdate = "update"
	opRemove = "remove"
	opUser   = "user"
)

// journalRecord is the JSON of one journal record. Its sequence is in the
// frame: an account's revision is the sequence of the record that last
// wrote it.
type journalRecord struct {
	Op        string          `json:"op"`
	Account   *diskAccount    `json:"account,omitempty"`
	PublicKey string          `json:"public_key,omitempty"`
	User      *provision.User `json:"user,omitempty"`
}

// snapshotLine is the JSON of one snapshot line: the header first, then
// each account followed by its users in issue order, then the trailer.
// The frame's sequence of a snapshot line is its line number.
type snapshotLine struct {
	Header  *snapshotHeader `json:"header,omitempty"`
	Account *diskAccount    `json:"account,omitempty"`
	Rev     uint64          `json:"rev,omitempty"`
	User    *provision.User `json:"user,omitempty"`
	Seq     uint64          `json:"seq,omitempty"`
	End     *snapshotEnd    `json:"end,omitempty"`
}

type snapshotHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// ID names this snapshot; the journal written with it carries it, so
	// that a journal is never replayed on another snapshot.
	ID string `json:"id"`
	// Seq is the store's sequence when the snapshot was taken; the
	// journal's first record is Seq+1.
	Seq uint64 `json:"seq"`
	// FromV1 holds, for a snapshot written by an upgrade, the checksum of
	// each previous-version file it was made from, so that an upgrade cut
	// short can be finished.
	FromV1 map[string]string `json:"from_v1,omitempty"`
}

type snapshotEnd struct {
	Accounts int `json:"accounts"`
	Users    int `json:"users"`
}

// newID returns a random snapshot ID.
func newID() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("filestore: snapshot id: %w", err)
	}
	id := binary.BigEndian.Uint64(b[:])
	if id == 0 {
		id = 1
	}
	return id, nil
}

func formatID(id uint64) string { return fmt.Sprintf("%016x", id) }

func parseID(s string) (uint64, error) {
	if len(s) != 16 || !isLowerHex([]byte(s)) {
		return 0, errors.New("bad snapshot id")
	}
	return strconv.ParseUint(s, 16, 64)
}

// fileSum is the checksum of a whole file, as recorded for an upgrade.
func fileSum(data []byte) string {
	return fmt.Sprintf("%08x", crc32.Checksum(data, castagnoli))
}

// slot is one of the journal's two header slots: which snapshot the
// journal belongs to, and how much of it is committed. It is rewritten,
// alternating between the slots, after each commit's data is durable.
type slot struct {
	gen    uint64 // the slot with the greater generation is current
	snap   uint64 // snapshot ID
	base   uint64 // the snapshot's sequence
	seq    uint64 // sequence of the last committed record
	end    int64  // offset past the last committed record
	closed bool   // nothing past end is to be read: a write there failed
}

const slotFormat = "filestore journal v2 gen=%016x snapshot=%016x base=%016x seq=%016x end=%016x closed=%d"

func (s slot) encode() []byte {
	closed := 0
	if s.closed {
		closed = 1
	}
	line := fmt.Appendf(nil, slotFormat, s.gen, s.snap, s.base, s.seq, s.end, closed)
	return fmt.Appendf(line, " crc=%08x\n", crc32.Checksum(line, castagnoli))
}

// decodeSlot reads a slot from the start of b.
func decodeSlot(b []byte) (slot, error) {
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		return slot{}, errors.New("no header line")
	}
	line := b[:nl+1]
	i := bytes.LastIndex(line, []byte(" crc="))
	if i < 0 {
		return slot{}, errors.New("header has no checksum")
	}
	var s slot
	var closed int
	var sum uint32
	if _, err := fmt.Sscanf(string(line[i:]), " crc=%08x\n", &sum); err != nil || sum != crc32.Checksum(line[:i], castagnoli) {
		return slot{}, errors.New("header checksum mismatch")
	}
	var end uint64
	if _, err := fmt.Sscanf(string(line[:i]), slotFormat, &s.gen, &s.snap, &s.base, &s.seq, &end, &closed); err != nil {
		return slot{}, errors.New("malformed header")
	}
	s.end, s.closed = int64(end), closed == 1
	if !bytes.Equal(s.encode(), line) || s.end < dataStart || end > 1<<62 {
		return slot{}, errors.New("malformed header")
	}
	return s, nil
}

// slotOffset is where the slot of generation gen lives: slots alternate.
func slotOffset(gen uint64) int64 { return int64(gen%2) * journalSlotSize }

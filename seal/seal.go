// Package seal keeps seeds sealed at rest: a store writes an account's
// identity and signing seeds only as boxes sealed with a curve key (an
// nkeys xkey, "SX..."), so a copy of the store, a KV bucket read with the
// service account's creds or a backup, is of no use without that key.
//
// A sealed value reads "xkv1:<curve public key>:<base64 box>". The public
// key names the key that sealed it, so that after a rotation the previous
// key still opens what it sealed until everything is sealed again.
package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/nacl/box"
)

const prefix = "xkv1:"

// Errors of Open.
var (
	// ErrNotSealed: the value is not in the sealed format.
	ErrNotSealed = errors.New("seal: value is not sealed")
	// ErrUnknownKey: the value was sealed with a key this Key does not
	// hold.
	ErrUnknownKey = errors.New("seal: sealed with another key")
	// ErrDamaged: the box does not open with the key that sealed it.
	ErrDamaged = errors.New("seal: sealed value does not open (damaged, or not sealed by this key)")
)

// UnknownKeyError is ErrUnknownKey naming the public key of the key that
// sealed the value, so that a store can say which key it lacks.
type UnknownKeyError struct{ Key string }

func (e *UnknownKeyError) Error() string        { return ErrUnknownKey.Error() + " " + e.Key }
func (e *UnknownKeyError) Is(target error) bool { return target == ErrUnknownKey }

// Key seals with one curve key and opens what it, or a previous key,
// sealed. It is safe for concurrent use.
//
// A key seals to itself, so the box's shared key is the same for every
// seal: it is computed once (box.Precompute) instead of an X25519 scalar
// multiplication per seal and per open, which was most of what an account
// write cost. The bytes are exactly nkeys' xkeys format ("xkv1", nonce,
// box), so nkeys opens what this seals and the other way round.
type Key struct {
	current *curve
	pub     string
	keys    map[string]*curve
}

// curve is one curve key: its public key and the shared key of a box from
// it to itself.
type curve struct {
	pub    string
	shared [32]byte
}

const (
	boxVersion = "xkv1"
	nonceLen   = 24
)

// New returns a Key that seals with the curve seed and also opens with the
// previous ones.
func New(seed []byte, previous ...[]byte) (*Key, error) {
	k := &Key{keys: map[string]*curve{}}
	for i, s := range append([][]byte{seed}, previous...) {
		c, err := newCurve(s)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i+1, err)
		}
		if i == 0 {
			k.current, k.pub = c, c.pub
		}
		k.keys[c.pub] = c
	}
	return k, nil
}

// newCurve reads a curve seed into its public key and the shared key of a
// box to itself. The nkeys key pair is wiped once they are derived.
func newCurve(seed []byte) (*curve, error) {
	kp, err := nkeys.FromCurveSeed(seed)
	if err != nil {
		return nil, errors.New("not a curve seed (SX...)")
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	encPriv, err := kp.PrivateKey()
	if err != nil {
		return nil, err
	}
	rawPriv, err := nkeys.Decode(nkeys.PrefixBytePrivate, encPriv)
	clear(encPriv)
	if err != nil || len(rawPriv) != 32 {
		return nil, errors.New("not a curve seed (SX...)")
	}
	rawPub, err := nkeys.Decode(nkeys.PrefixByteCurve, []byte(pub))
	if err != nil || len(rawPub) != 32 {
		clear(rawPriv)
		return nil, errors.New("not a curve seed (SX...)")
	}
	var priv, public [32]byte
	copy(priv[:], rawPriv)
	copy(public[:], rawPub)
	clear(rawPriv)
	c := &curve{pub: pub}
	box.Precompute(&c.shared, &public, &priv)
	clear(priv[:])
	return c, nil
}

// FileError is Load's error on one of its files: Previous tells one of
// the previous keys from the key that seals, so that the caller can name
// the config field that lists it.
type FileError struct {
	Path     string
	Previous bool
	Err      error
}

func (e *FileError) Error() string { return e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Load reads a seal key file (a curve seed, "SX...", alone or decorated as
// nsc writes it) and previous ones, which open what they sealed. An error
// on a file is a *FileError.
func Load(path string, previous ...string) (*Key, error) {
	var seeds [][]byte
	for i, p := range append([]string{path}, previous...) {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, &FileError{p, i > 0, fmt.Errorf("seal key: %w", err)}
		}
		var seed []byte
		for _, f := range strings.Fields(string(raw)) {
			if _, err := nkeys.FromCurveSeed([]byte(f)); err == nil {
				seed = []byte(f)
				break
			}
		}
		if seed == nil {
			return nil, &FileError{p, i > 0, fmt.Errorf("seal key %s must hold a curve seed (SX...); `provisioner init` writes one, `nk -gen curve` makes one", p)}
		}
		seeds = append(seeds, seed)
	}
	return New(seeds[0], seeds[1:]...)
}

// PublicKey returns the public key of the curve key that seals.
func (k *Key) PublicKey() string { return k.pub }

// Seal seals a secret to the key itself.
func (k *Key) Seal(secret []byte) (string, error) {
	var nonce [nonceLen]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := make([]byte, 0, len(boxVersion)+nonceLen+len(secret)+box.Overhead)
	out = append(append(out, boxVersion...), nonce[:]...)
	out = box.SealAfterPrecomputation(out, secret, &nonce, &k.current.shared)
	return prefix + k.pub + ":" + base64.StdEncoding.EncodeToString(out), nil
}

// Open opens a sealed value. It fails with ErrNotSealed, ErrUnknownKey or
// ErrDamaged; the error never holds the secret.
func (k *Key) Open(sealed string) ([]byte, error) {
	pub, sealedBytes, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	return k.open(pub, sealedBytes)
}

func (k *Key) open(pub string, sealed []byte) ([]byte, error) {
	c := k.keys[pub]
	if c == nil {
		return nil, &UnknownKeyError{Key: pub}
	}
	if len(sealed) <= len(boxVersion)+nonceLen || string(sealed[:len(boxVersion)]) != boxVersion {
		return nil, ErrDamaged
	}
	var nonce [nonceLen]byte
	copy(nonce[:], sealed[len(boxVersion):])
	out, ok := box.OpenAfterPrecomputation(nil, sealed[len(boxVersion)+nonceLen:], &nonce, &c.shared)
	if !ok {
		return nil, ErrDamaged
	}
	return out, nil
}

// Current reports whether a sealed value was sealed with the current key,
// so that a store can seal again what an older key sealed.
func (k *Key) Current(sealed string) bool {
	pub, _, err := parse(sealed)
	return err == nil && pub == k.pub
}

// IsSealed reports whether a value is in the sealed format.
func IsSealed(v string) bool {
	_, _, err := parse(v)
	return err == nil
}

func parse(v string) (string, []byte, error) {
	rest, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return "", nil, ErrNotSealed
	}
	pub, b64, ok := strings.Cut(rest, ":")
	if !ok || !nkeys.IsValidPublicCurveKey(pub) {
		return "", nil, ErrNotSealed
	}
	box, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", nil, ErrNotSealed
	}
	return pub, box, nil
}

// Wipe forgets the keys.
func (k *Key) Wipe() {
	for _, c := range k.keys {
		clear(c.shared[:])
	}
}

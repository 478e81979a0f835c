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
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"
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

// Key seals with one curve key and opens what it, or a previous key,
// sealed. It is safe for concurrent use.
type Key struct {
	current nkeys.KeyPair
	pub     string
	keys    map[string]nkeys.KeyPair
}

// New returns a Key that seals with the curve seed and also opens with the
// previous ones.
func New(seed []byte, previous ...[]byte) (*Key, error) {
	k := &Key{keys: map[string]nkeys.KeyPair{}}
	for i, s := range append([][]byte{seed}, previous...) {
		kp, err := nkeys.FromCurveSeed(s)
		if err != nil {
			return nil, fmt.Errorf("seal: key %d is not a curve seed (SX...)", i+1)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("seal: key %d: %w", i+1, err)
		}
		if i == 0 {
			k.current, k.pub = kp, pub
		}
		k.keys[pub] = kp
	}
	return k, nil
}

// Load reads a seal key file (a curve seed, "SX...", alone or decorated as
// nsc writes it) and previous ones, which open what they sealed.
func Load(path string, previous ...string) (*Key, error) {
	var seeds [][]byte
	for _, p := range append([]string{path}, previous...) {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("seal key: %w", err)
		}
		var seed []byte
		for _, f := range strings.Fields(string(raw)) {
			if _, err := nkeys.FromCurveSeed([]byte(f)); err == nil {
				seed = []byte(f)
				break
			}
		}
		if seed == nil {
			return nil, fmt.Errorf("seal key %s must hold a curve seed (SX...); `provisioner init` writes one, `nk -gen curve` makes one", p)
		}
		seeds = append(seeds, seed)
	}
	return New(seeds[0], seeds[1:]...)
}

// PublicKey returns the public key of the curve key that seals.
func (k *Key) PublicKey() string { return k.pub }

// Seal seals a secret to the key itself.
func (k *Key) Seal(secret []byte) (string, error) {
	box, err := k.current.Seal(secret, k.pub)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return prefix + k.pub + ":" + base64.StdEncoding.EncodeToString(box), nil
}

// Open opens a sealed value. It fails with ErrNotSealed, ErrUnknownKey or
// ErrDamaged; the error never holds the secret.
func (k *Key) Open(sealed string) ([]byte, error) {
	pub, box, err := parse(sealed)
	if err != nil {
		return nil, err
	}
	kp := k.keys[pub]
	if kp == nil {
		return nil, fmt.Errorf("%w %s", ErrUnknownKey, pub)
	}
	out, err := kp.Open(box, pub)
	if err != nil {
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
	for _, kp := range k.keys {
		kp.Wipe()
	}
}

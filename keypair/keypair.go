// Package keypair provides nkeys key pairs that derive their Ed25519 keys
// once. An nkeys.KeyPair made by nkeys keeps only the seed and derives the
// key again on every PublicKey and Sign call, a scalar multiplication each;
// on the provisioning hot paths (issue a user: create a key, read its public
// key, sign with the account key) that was most of the work.
package keypair

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/nats-io/nkeys"
)

// KeyPair is an nkeys.KeyPair for signing keys (operator, account, user)
// with its keys derived once.
type KeyPair struct {
	prefix nkeys.PrefixByte
	seed   []byte
	pub    string
	priv   ed25519.PrivateKey
}

var _ nkeys.KeyPair = (*KeyPair)(nil)

// FromSeed returns the key pair of an encoded nkey seed.
func FromSeed(seed []byte) (*KeyPair, error) {
	prefix, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, err
	}
	if prefix == nkeys.PrefixByteCurve {
		return nil, errors.New("keypair: curve keys do not sign")
	}
	return fromRaw(prefix, raw)
}

// Create makes a new key pair of the given kind, such as
// nkeys.PrefixByteUser.
func Create(prefix nkeys.PrefixByte) (*KeyPair, error) {
	raw := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand.Reader, raw); err != nil {
		return nil, err
	}
	return fromRaw(prefix, raw)
}

func fromRaw(prefix nkeys.PrefixByte, raw []byte) (*KeyPair, error) {
	priv := ed25519.NewKeyFromSeed(raw)
	pub, err := nkeys.Encode(prefix, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	seed, err := nkeys.EncodeSeed(prefix, raw)
	if err != nil {
		return nil, err
	}
	if prefix == nkeys.PrefixByteAccount {
		// Only account seeds are checked against their keys; user keys,
		// made by the thousand, would crowd them out.
		remember(seed, string(pub))
	}
	return &KeyPair{prefix: prefix, seed: seed, pub: string(pub), priv: priv}, nil
}

// derived holds the public keys of the seeds this process derived, by a
// digest of the seed (never the seed itself), so that a store checking
// that a new account's seeds belong to its public keys need not derive
// them again: a scalar multiplication each, which was a third of the file
// store's CPU in an account.create. It is bounded: when full it starts
// over, and a seed it no longer knows is derived again.
var derived = struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]string
}{m: map[[sha256.Size]byte]string{}}

const maxDerived = 4096

func remember(seed []byte, pub string) {
	d := sha256.Sum256(seed)
	derived.mu.Lock()
	if len(derived.m) >= maxDerived {
		clear(derived.m)
	}
	derived.m[d] = pub
	derived.mu.Unlock()
}

// PublicKeyOf returns the public key of an encoded seed of any kind: the
// one this process derived when it made or read an account key pair, else
// derived now. The error names what is wrong, never the seed.
func PublicKeyOf(seed []byte) (string, error) {
	d := sha256.Sum256(seed)
	derived.mu.Lock()
	pub, ok := derived.m[d]
	derived.mu.Unlock()
	if ok {
		return pub, nil
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// Format writes the key pair as its public key, whatever the verb: a key
// pair printed by mistake (%v, %+v, %#v, %s, %x) never shows its seed or
// private key.
func (k *KeyPair) Format(f fmt.State, _ rune) { fmt.Fprintf(f, "keypair(%s)", k.pub) }

// LogValue logs the key pair as its public key.
func (k *KeyPair) LogValue() slog.Value { return slog.StringValue("keypair(" + k.pub + ")") }

// Seed returns the encoded seed.
func (k *KeyPair) Seed() ([]byte, error) { return k.seed, nil }

// PublicKey returns the encoded public key.
func (k *KeyPair) PublicKey() (string, error) { return k.pub, nil }

// PrivateKey returns the encoded private key.
func (k *KeyPair) PrivateKey() ([]byte, error) { return nkeys.Encode(nkeys.PrefixBytePrivate, k.priv) }

// Sign signs input with the private key.
func (k *KeyPair) Sign(input []byte) ([]byte, error) { return ed25519.Sign(k.priv, input), nil }

// Verify checks a signature of input against the public key.
func (k *KeyPair) Verify(input, sig []byte) error {
	if !ed25519.Verify(k.priv.Public().(ed25519.PublicKey), input, sig) {
		return nkeys.ErrInvalidSignature
	}
	return nil
}

// Wipe overwrites the seed and the private key.
func (k *KeyPair) Wipe() {
	clear(k.seed)
	clear(k.priv)
}

// Seal is not supported: these are not curve keys.
func (k *KeyPair) Seal([]byte, string) ([]byte, error) { return nil, nkeys.ErrInvalidNKeyOperation }

// SealWithRand is not supported: these are not curve keys.
func (k *KeyPair) SealWithRand([]byte, string, io.Reader) ([]byte, error) {
	return nil, nkeys.ErrInvalidNKeyOperation
}

// Open is not supported: these are not curve keys.
func (k *KeyPair) Open([]byte, string) ([]byte, error) { return nil, nkeys.ErrInvalidNKeyOperation }

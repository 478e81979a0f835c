package filestore

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/keypair"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// held is an account as the store holds it: the account, its disk form
// (seeds sealed where the store seals, so that a compaction writes it
// again without sealing again), and the public keys of its signing seeds.
type held struct {
	a       provision.Account
	disk    diskAccount
	signers []string // of a.SigningKeys, in order; nil when not checked
}

// checkAccount verifies that an account's parts belong together: its
// identity seed derives its public key, its JWT is an account JWT for that
// key, and each signing seed derives a key the JWT lists. It returns the
// signing seeds' public keys. The store runs it on every account it writes
// and every account it loads, so that a seed changed on disk is found at
// the next start, not when it signs. Seeds that prev, the account as
// stored, holds too are not derived again. The error names what does not
// match, never a seed.
func checkAccount(a *provision.Account, seeds bool, prev *held) ([]string, error) {
	if !nkeys.IsValidPublicAccountKey(a.PublicKey) {
		return nil, errors.New("public key is not an account public key (A...)")
	}
	if a.Name == "" {
		return nil, errors.New("name is empty")
	}
	switch a.Phase {
	case "", provision.PhaseLive, provision.PhaseDisabled, provision.PhaseDeleted:
	default:
		return nil, fmt.Errorf("unknown phase %q", a.Phase)
	}
	var claims *accountPayload
	if a.JWT != "" {
		c, err := decodeAccountJWT(a.JWT)
		if err != nil {
			return nil, fmt.Errorf("JWT does not decode as an account JWT: %v", err)
		}
		if c.Subject != a.PublicKey {
			return nil, fmt.Errorf("JWT is for account %s", c.Subject)
		}
		claims = c
	}
	if !seeds {
		return nil, nil
	}
	if a.IdentitySeed != "" && (prev == nil || prev.a.PublicKey != a.PublicKey || prev.a.IdentitySeed != a.IdentitySeed) {
		pub, err := seedPublic(a.IdentitySeed)
		if err != nil {
			return nil, fmt.Errorf("identity seed: %v", err)
		}
		if pub != a.PublicKey {
			return nil, fmt.Errorf("identity seed derives %s, not the account's public key", pub)
		}
	}
	signers := make([]string, 0, len(a.SigningKeys))
	for i, sk := range a.SigningKeys {
		pub, known := prev.signer(sk.Seed)
		if !known {
			var err error
			if pub, err = seedPublic(sk.Seed); err != nil {
				return nil, fmt.Errorf("signing key %d: %v", i+1, err)
			}
		}
		if claims == nil {
			return nil, fmt.Errorf("signing key %d (%s) has no JWT to be listed in", i+1, pub)
		}
		if !claims.Nats.SigningKeys.Contains(pub) {
			return nil, fmt.Errorf("signing key %d derives %s, which its JWT does not list", i+1, pub)
		}
		signers = append(signers, pub)
	}
	return signers, nil
}

// accountPayload is what the store checks of an account JWT.
type accountPayload struct {
	Subject string `json:"sub"`
	Nats    struct {
		Type        jwt.ClaimType   `json:"type"`
		SigningKeys jwt.SigningKeys `json:"signing_keys"`
	} `json:"nats"`
}

// decodeAccountJWT reads the claims of an account JWT without verifying
// its signature: the signer made it moments before, and on disk the
// checksums cover it. Verifying costs an ed25519 verification, more than
// the rest of a write, on every write and every load.
func decodeAccountJWT(token string) (*accountPayload, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not three parts")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errors.New("claims are not base64url")
	}
	var p accountPayload
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("claims do not decode: %v", err)
	}
	if p.Nats.Type != jwt.AccountClaim {
		return nil, fmt.Errorf("claims of type %q", p.Nats.Type)
	}
	return &p, nil
}

// signer returns the public key of a signing seed the account holds.
func (h *held) signer(seed provision.Seed) (string, bool) {
	if h == nil || len(h.signers) != len(h.a.SigningKeys) {
		return "", false
	}
	for i, sk := range h.a.SigningKeys {
		if sk.Seed == seed {
			return h.signers[i], true
		}
	}
	return "", false
}

// sealed returns the disk form of a seed the account holds.
func (h *held) sealed(seed provision.Seed) (string, bool) {
	if h == nil || seed == "" {
		return "", false
	}
	if seed == h.a.IdentitySeed {
		return h.disk.IdentitySeed, true
	}
	for i, sk := range h.a.SigningKeys {
		if sk.Seed == seed && i < len(h.disk.SigningKeys) {
			return h.disk.SigningKeys[i].Seed, true
		}
	}
	return "", false
}

// seedPublic returns the public key of an account seed.
func seedPublic(s provision.Seed) (string, error) {
	pub, err := keypair.PublicKeyOf(s.Bytes())
	if err != nil {
		// The nkeys error names the problem, not the seed.
		return "", fmt.Errorf("not a valid seed (%v)", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return "", errors.New("not an account seed (SA...)")
	}
	return pub, nil
}

// toDisk renders an account for writing, its seeds sealed when key is set.
// Seeds that prev, the account as stored, holds keep their sealed form:
// sealing costs more than the rest of a write.
func toDisk(a *provision.Account, key *seal.Key, prev *held) (diskAccount, error) {
	d := diskAccount{
		PublicKey: a.PublicKey,
		Name:      a.Name,
		JWT:       a.JWT,
		Phase:     a.Phase,
		DeletedAt: a.DeletedAt,
		Settings:  a.Settings,
	}
	var err error
	if d.IdentitySeed, err = sealSeed(a.IdentitySeed, key, prev); err != nil {
		return d, err
	}
	for _, sk := range a.SigningKeys {
		s, err := sealSeed(sk.Seed, key, prev)
		if err != nil {
			return d, err
		}
		d.SigningKeys = append(d.SigningKeys, diskSigningKey{Seed: s, Role: sk.Role, Retired: sk.Retired})
	}
	return d, nil
}

func sealSeed(s provision.Seed, key *seal.Key, prev *held) (string, error) {
	if s == "" || key == nil {
		return string(s), nil
	}
	if v, ok := prev.sealed(s); ok && key.Current(v) {
		return v, nil
	}
	return key.Seal(s.Bytes())
}

// seedForms counts how the seeds of what was loaded are written.
type seedForms struct {
	plain  int // written plain
	sealed int // written sealed
	stale  int // plain while a key is set, or sealed with a previous key
}

// errNoKey: a seed is sealed and no key was given.
var errNoKey = errors.New("sealed, and no seal key was given")

// fromDisk returns the account a disk record holds, its seeds opened with
// key. With no key, sealed seeds are left out and errNoKey is returned
// with the account, so that a read-only check can go on.
func fromDisk(d *diskAccount, key *seal.Key, forms *seedForms) (provision.Account, error) {
	a := provision.Account{
		PublicKey: d.PublicKey,
		Name:      d.Name,
		JWT:       d.JWT,
		Phase:     d.Phase,
		DeletedAt: d.DeletedAt,
		Settings:  d.Settings,
	}
	var missing error
	open := func(v string) (provision.Seed, error) {
		if v == "" {
			return "", nil
		}
		if !seal.IsSealed(v) {
			forms.plain++
			if key != nil {
				forms.stale++
			}
			return provision.Seed(v), nil
		}
		forms.sealed++
		if key == nil {
			missing = errNoKey
			return "", nil
		}
		b, err := key.Open(v)
		if err != nil {
			return "", err
		}
		// Counted once opened: a seed the key cannot open is not one
		// that a start with it seals anew.
		if !key.Current(v) {
			forms.stale++
		}
		return provision.Seed(b), nil
	}
	var err error
	if a.IdentitySeed, err = open(d.IdentitySeed); err != nil {
		return a, fmt.Errorf("identity seed: %w", err)
	}
	for i, sk := range d.SigningKeys {
		s, err := open(sk.Seed)
		if err != nil {
			return a, fmt.Errorf("signing key %d: %w", i+1, err)
		}
		a.SigningKeys = append(a.SigningKeys, provision.SigningKey{Seed: s, Role: sk.Role, Retired: sk.Retired})
	}
	return a, missing
}

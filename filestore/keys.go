package filestore

import (
	"errors"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// checkAccount verifies that an account's parts belong together: its
// identity seed derives its public key, its JWT is an account JWT for that
// key, and each signing seed derives a key the JWT lists. The store runs
// it on every account it writes and every account it loads, so that a
// seed changed on disk is found at the next start, not when it signs. The
// error names the account and what does not match, never a seed.
func checkAccount(a *provision.Account, seeds bool) error {
	if !nkeys.IsValidPublicAccountKey(a.PublicKey) {
		return errors.New("public key is not an account public key (A...)")
	}
	if a.Name == "" {
		return errors.New("name is empty")
	}
	switch a.Phase {
	case "", provision.PhaseLive, provision.PhaseDisabled, provision.PhaseDeleted:
	default:
		return fmt.Errorf("unknown phase %q", a.Phase)
	}
	var claims *jwt.AccountClaims
	if a.JWT != "" {
		c, err := jwt.DecodeAccountClaims(a.JWT)
		if err != nil {
			return fmt.Errorf("JWT does not decode as an account JWT: %v", err)
		}
		if c.Subject != a.PublicKey {
			return fmt.Errorf("JWT is for account %s", c.Subject)
		}
		claims = c
	}
	if !seeds {
		return nil
	}
	if a.IdentitySeed != "" {
		pub, err := seedPublic(a.IdentitySeed)
		if err != nil {
			return fmt.Errorf("identity seed: %v", err)
		}
		if pub != a.PublicKey {
			return fmt.Errorf("identity seed derives %s, not the account's public key", pub)
		}
	}
	for i, sk := range a.SigningKeys {
		pub, err := seedPublic(sk.Seed)
		if err != nil {
			return fmt.Errorf("signing key %d: %v", i+1, err)
		}
		if claims == nil {
			return fmt.Errorf("signing key %d (%s) has no JWT to be listed in", i+1, pub)
		}
		if !claims.SigningKeys.Contains(pub) {
			return fmt.Errorf("signing key %d derives %s, which its JWT does not list", i+1, pub)
		}
	}
	return nil
}

// seedPublic returns the public key of an account seed.
func seedPublic(s provision.Seed) (string, error) {
	kp, err := nkeys.FromSeed(s.Bytes())
	if err != nil {
		// The nkeys error names the problem, not the seed.
		return "", fmt.Errorf("not a valid seed (%v)", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("not a valid seed (%v)", err)
	}
	if !nkeys.IsValidPublicAccountKey(pub) {
		return "", errors.New("not an account seed (SA...)")
	}
	return pub, nil
}

// toDisk renders an account for writing, its seeds sealed when key is set.
func toDisk(a *provision.Account, key *seal.Key) (diskAccount, error) {
	d := diskAccount{
		PublicKey: a.PublicKey,
		Name:      a.Name,
		JWT:       a.JWT,
		Phase:     a.Phase,
		DeletedAt: a.DeletedAt,
	}
	var err error
	if d.IdentitySeed, err = sealSeed(a.IdentitySeed, key); err != nil {
		return d, err
	}
	for _, sk := range a.SigningKeys {
		s, err := sealSeed(sk.Seed, key)
		if err != nil {
			return d, err
		}
		d.SigningKeys = append(d.SigningKeys, diskSigningKey{Seed: s, Role: sk.Role})
	}
	return d, nil
}

func sealSeed(s provision.Seed, key *seal.Key) (string, error) {
	if s == "" || key == nil {
		return string(s), nil
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
		if !key.Current(v) {
			forms.stale++
		}
		b, err := key.Open(v)
		if err != nil {
			return "", err
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
		a.SigningKeys = append(a.SigningKeys, provision.SigningKey{Seed: s, Role: sk.Role})
	}
	return a, missing
}

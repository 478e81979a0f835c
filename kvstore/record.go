package kvstore

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/keypair"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// recordVersion is the version of the account record format; a record of
// a later version is refused rather than rewritten without what it added.
const recordVersion = 1

// accountRecord is an account as the bucket holds it: seeds sealed.
type accountRecord struct {
	V            int                `json:"v"`
	PublicKey    string             `json:"public_key"`
	Name         string             `json:"name"`
	IdentitySeed string             `json:"identity_seed,omitempty"`
	SigningKeys  []signingKeyRecord `json:"signing_keys,omitempty"`
	JWT          string             `json:"jwt"`
	Phase        provision.Phase    `json:"phase"`
	DeletedAt    int64              `json:"deleted_at,omitempty"`
	// Settings are the service's own settings of the account.
	Settings provision.AccountSettings `json:"settings,omitzero"`
	// Revived is set on the record that makes a tombstone live again: what
	// of the tombstone differs from it. When another create took the name
	// over meanwhile and the reviving instance died before writing the
	// tombstone back, the next open's sweep writes it back from this
	// (instead of removing the record, which would forget the tombstone).
	Revived *revivedRecord `json:"revived,omitempty"`
}

// revivedRecord is the tombstone a revive replaced; a tombstone holds no
// keys.
type revivedRecord struct {
	Phase     provision.Phase `json:"phase"`
	DeletedAt int64           `json:"deleted_at,omitempty"`
	JWT       string          `json:"jwt"`
}

type signingKeyRecord struct {
	Seed    string `json:"seed"`
	Role    string `json:"role,omitempty"`
	Retired bool   `json:"retired,omitempty"`
}

func accountKey(pub string) string { return accountPrefix + pub }
func userKey(pub string) string    { return userPrefix + pub }
func nameKey(name string) string {
	return namePrefix + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func nameOfKey(key string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(key[len(namePrefix):])
	if err != nil {
		return "", fmt.Errorf("name key %s is not base64url", key)
	}
	return string(b), nil
}

// phase returns a's phase, with "" read as live.
func phase(a provision.Account) provision.Phase {
	if a.Phase == "" {
		return provision.PhaseLive
	}
	return a.Phase
}

// validAccount checks what the store can check of an account: its keys,
// its name, its phase. The errors never hold a seed.
func validAccount(a provision.Account) error {
	if !nkeys.IsValidPublicAccountKey(a.PublicKey) {
		return invalid("account public key %q is not an account public key", a.PublicKey)
	}
	if a.Name == "" {
		return invalid("account %s has no name", a.PublicKey)
	}
	if a.JWT == "" {
		return invalid("account %s has no JWT", a.PublicKey)
	}
	switch phase(a) {
	case provision.PhaseLive, provision.PhaseDisabled, provision.PhaseDeleted:
	default:
		return invalid("account %s: unknown phase %q", a.PublicKey, a.Phase)
	}
	if a.IdentitySeed != "" {
		pub, err := keypair.PublicKeyOf(a.IdentitySeed.Bytes())
		if err != nil {
			return invalid("account %s: identity seed is not an nkey seed", a.PublicKey)
		}
		if pub != a.PublicKey {
			return invalid("account %s: identity seed is not the seed of that public key", a.PublicKey)
		}
	} else if a.Live() {
		return invalid("account %s is live but has no identity seed", a.PublicKey)
	}
	for i, sk := range a.SigningKeys {
		prefix, _, err := nkeys.DecodeSeed(sk.Seed.Bytes())
		if err != nil || prefix != nkeys.PrefixByteAccount {
			return invalid("account %s: signing key %d is not an account seed", a.PublicKey, i+1)
		}
	}
	return nil
}

// sealAccount encodes an account for the bucket. Seeds that prev holds
// sealed with the current seal key keep that sealed form; every other seed,
// those sealed by an older key among them, is sealed again now. It returns
// the encoding and the sealed form of each seed. revived is set only by
// a revive.
func (s *Store) sealAccount(a provision.Account, prev *accountEntry, revived *revivedRecord) ([]byte, map[provision.Seed]string, error) {
	sealed := map[provision.Seed]string{}
	sealOne := func(seed provision.Seed) (string, error) {
		if v, ok := sealed[seed]; ok {
			return v, nil
		}
		if prev != nil {
			if v, ok := prev.sealed[seed]; ok && s.seal.Current(v) {
				sealed[seed] = v
				return v, nil
			}
		}
		v, err := s.seal.Seal(seed.Bytes())
		if err != nil {
			return "", fmt.Errorf("kvstore: account %s: %w", a.PublicKey, err)
		}
		sealed[seed] = v
		return v, nil
	}
	rec := accountRecord{V: recordVersion, PublicKey: a.PublicKey, Name: a.Name, JWT: a.JWT, Phase: phase(a), DeletedAt: a.DeletedAt, Settings: a.Settings, Revived: revived}
	if a.IdentitySeed != "" {
		v, err := sealOne(a.IdentitySeed)
		if err != nil {
			return nil, nil, err
		}
		rec.IdentitySeed = v
	}
	for _, sk := range a.SigningKeys {
		v, err := sealOne(sk.Seed)
		if err != nil {
			return nil, nil, err
		}
		rec.SigningKeys = append(rec.SigningKeys, signingKeyRecord{Seed: v, Role: sk.Role, Retired: sk.Retired})
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, nil, fmt.Errorf("kvstore: encode account %s: %w", a.PublicKey, err)
	}
	return data, sealed, nil
}

// errNotSealed: a seed field of a record read from the bucket is not in
// the sealed format. The store never writes one.
var errNotSealed = errors.New("kvstore: seed stored unsealed")

// openAccount decodes an account record read at key, opening its seeds.
// The error names the key, never a seed.
func openAccount(k *seal.Key, key string, data []byte) (*accountEntry, error) {
	var rec accountRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("kvstore: %s: not an account record: %w", key, err)
	}
	if rec.V > recordVersion {
		return nil, fmt.Errorf("kvstore: %s: record version %d, written by a newer provisioner (this one reads %d)", key, rec.V, recordVersion)
	}
	if accountKey(rec.PublicKey) != key {
		return nil, fmt.Errorf("kvstore: %s holds the record of account %q", key, rec.PublicKey)
	}
	e := &accountEntry{sealed: map[provision.Seed]string{}, revived: rec.Revived}
	open := func(what, v string) (provision.Seed, error) {
		if !seal.IsSealed(v) {
			return "", fmt.Errorf("%w: %s %s", errNotSealed, key, what)
		}
		b, err := k.Open(v)
		if err != nil {
			return "", fmt.Errorf("kvstore: %s %s: %w", key, what, err)
		}
		seed := provision.Seed(b)
		e.sealed[seed] = v
		return seed, nil
	}
	a := provision.Account{PublicKey: rec.PublicKey, Name: rec.Name, JWT: rec.JWT, Phase: rec.Phase, DeletedAt: rec.DeletedAt, Settings: rec.Settings}
	if rec.IdentitySeed != "" {
		seed, err := open("identity seed", rec.IdentitySeed)
		if err != nil {
			return nil, err
		}
		a.IdentitySeed = seed
	}
	for i, sk := range rec.SigningKeys {
		seed, err := open(fmt.Sprintf("signing key %d", i+1), sk.Seed)
		if err != nil {
			return nil, err
		}
		a.SigningKeys = append(a.SigningKeys, provision.SigningKey{Seed: seed, Role: sk.Role, Retired: sk.Retired})
	}
	// A record edited by hand (a seed copied from another account's
	// record opens with the same seal key) is damage, as in the file
	// store: served, the account's JWTs were signed with another
	// account's key. Not ErrInvalid: the request is not at fault.
	if err := validAccount(a); err != nil {
		return nil, fmt.Errorf("kvstore: %s: damaged record: %s", key, strings.TrimPrefix(err.Error(), "kvstore: "+provision.ErrInvalid.Error()+": "))
	}
	e.a = a
	return e, nil
}

// lockedName reads, without opening its seeds, the name of an account
// record that is live and not a revive's: "" for any other (see
// accountEntry.lockedName).
func lockedName(data []byte) string {
	var rec struct {
		V       int             `json:"v"`
		Name    string          `json:"name"`
		Phase   provision.Phase `json:"phase"`
		Revived *revivedRecord  `json:"revived"`
	}
	if json.Unmarshal(data, &rec) != nil || rec.V > recordVersion || rec.Revived != nil || rec.Phase != provision.PhaseLive && rec.Phase != "" {
		return ""
	}
	return rec.Name
}

// liveOf reads only the phase of an account record, without opening its
// seeds: whether the account holds its name.
func liveOf(data []byte) (bool, error) {
	var rec struct {
		Phase provision.Phase `json:"phase"`
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return false, err
	}
	return rec.Phase == provision.PhaseLive || rec.Phase == "", nil
}

// sameAccount reports whether two accounts hold the same record: every
// field but Revision, the settings too (a migrate run again calls a
// bucket's record that is the same as the source's the same, and leaves
// it). TestSameAccountSeesEveryField fails on a field added and not here.
func sameAccount(a, b provision.Account) bool {
	return a.PublicKey == b.PublicKey && a.Name == b.Name && a.IdentitySeed == b.IdentitySeed &&
		slices.Equal(a.SigningKeys, b.SigningKeys) && a.JWT == b.JWT && phase(a) == phase(b) && a.DeletedAt == b.DeletedAt &&
		a.Settings == b.Settings
}

func validUser(u provision.User) error {
	if !nkeys.IsValidPublicUserKey(u.PublicKey) {
		return invalid("user public key %q is not a user public key", u.PublicKey)
	}
	if !nkeys.IsValidPublicAccountKey(u.Account) {
		return invalid("user %s: account %q is not an account public key", u.PublicKey, u.Account)
	}
	return nil
}

// packRecord is the value of a upack. key: the records of users whose keys
// this service made, many to one message (see pack.go).
type packRecord struct {
	Users []provision.User `json:"users"`
}

func decodePack(key string, data []byte) ([]provision.User, error) {
	var p packRecord
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("kvstore: %s: not a pack of user records: %w", key, err)
	}
	for _, u := range p.Users {
		if err := validUser(u); err != nil {
			return nil, fmt.Errorf("kvstore: %s: %w", key, err)
		}
	}
	return p.Users, nil
}

func decodeUser(key string, data []byte) (provision.User, error) {
	var u provision.User
	if err := json.Unmarshal(data, &u); err != nil {
		return u, fmt.Errorf("kvstore: %s: not a user record: %w", key, err)
	}
	// Neither value is quoted: it could be anything pasted there.
	if userKey(u.PublicKey) != key {
		return u, fmt.Errorf("kvstore: %s: not its user's record: it holds another key's, or none", key)
	}
	if !nkeys.IsValidPublicAccountKey(u.Account) {
		// Every record the store writes names its account (validUser):
		// read, it was shown under no account, which nothing lists or
		// removes.
		return u, fmt.Errorf("kvstore: %s: not a user record: its account is no account public key", key)
	}
	return u, nil
}

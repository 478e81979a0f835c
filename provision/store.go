package provision

import (
	"context"
	"log/slog"
	"slices"
)

// Seed is an nkey seed. Its String, GoString and LogValue methods redact
// it, so a seed that reaches a log line or an error by accident prints as
// "[redacted]". Only a store's encoding writes it out, sealed where the
// store is configured with a seal key.
type Seed string

const redacted = "[redacted]"

// String returns a redacted placeholder, never the seed.
func (Seed) String() string { return redacted }

// GoString returns a redacted placeholder, never the seed.
func (Seed) GoString() string { return redacted }

// LogValue makes slog print a redacted placeholder.
func (Seed) LogValue() slog.Value { return slog.StringValue(redacted) }

// Bytes returns the seed itself, for nkeys.FromSeed.
func (s Seed) Bytes() []byte { return []byte(s) }

// Phase is where an account is in its life. A deleted account stays in the
// store as a tombstone (its public key, name, deletion time and the
// disabled version of its JWT) until it has reached PhaseDeleted and its
// retention has passed.
type Phase string

const (
	// PhaseLive is an account in use.
	PhaseLive Phase = "live"
	// PhaseDisabled is a deleted account whose disabled version (no
	// connections, every user revoked, a newer iat) is its current JWT.
	// That version is the servers' tombstone: resolver sync spreads it,
	// since it is newer than any live copy. The DELETE follows once every
	// known server has confirmed it.
	PhaseDisabled Phase = "disabled"
	// PhaseDeleted is a deleted account that every known server has
	// dropped (or, where servers do not allow deletes, holds disabled).
	// Its record is kept for the tombstone retention, so that a server
	// restored from an old disk is put right, not taken for an orphan.
	PhaseDeleted Phase = "deleted"
)

// SigningKey is one of an account's signing keys.
type SigningKey struct {
	Seed Seed `json:"seed"`
	// Role is the name of the scoped signing key's role; "" is the
	// account's plain signing key, which signs users without a role.
	Role string `json:"role,omitempty"`
	// Retired is set for a key a rotation replaced: it stays in the
	// account JWT, so what it signed stays valid, but signs nothing new.
	Retired bool `json:"retired,omitempty"`
}

// Account is what the store keeps of one account, users aside.
type Account struct {
	PublicKey string `json:"public_key"`
	Name      string `json:"name"`
	// IdentitySeed is the account's identity key. A tombstone keeps none.
	IdentitySeed Seed `json:"identity_seed,omitempty"`
	// SigningKeys are the account's signing keys, the one in use for users
	// without a role first. A tombstone keeps none.
	SigningKeys []SigningKey `json:"signing_keys,omitempty"`
	// JWT is the account's current version: the one pushed, or to be
	// pushed, to every server. Each version has an iat strictly greater
	// than the one before.
	JWT   string `json:"jwt"`
	Phase Phase  `json:"phase"`
	// DeletedAt is when a delete was accepted, in Unix seconds, and once
	// it finished (PhaseDeleted) when it finished: the tombstone
	// retention counts from there.
	DeletedAt int64 `json:"deleted_at,omitempty"`
	// Settings are the service's own settings of the account.
	Settings AccountSettings `json:"settings,omitzero"`
	// Revision is the store's revision of this record when it was read:
	// an update must give it back, and fails with ErrStale when another
	// change came first. It is not part of the record itself.
	Revision uint64 `json:"-"`
}

// LogValue keeps the seeds out of logs, whatever the handler.
func (a Account) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", a.Name), slog.String("public_key", a.PublicKey), slog.String("phase", string(a.Phase)))
}

// Live reports whether the account is in use, not a tombstone.
func (a Account) Live() bool { return a.Phase == PhaseLive || a.Phase == "" }

// User is the record of one issued user. It never holds the user's seed.
// A user public key has at most one record, in one account, and records
// are never overwritten: a key is issued once.
type User struct {
	PublicKey string `json:"public_key"`
	Account   string `json:"account"`
	Name      string `json:"name"`
	// IssuedAt and ExpiresAt are the JWT's iat and exp (0: no expiry), in
	// Unix seconds.
	IssuedAt  int64 `json:"issued_at"`
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// Role is the role the user was issued in, "" for none.
	Role string `json:"role,omitempty"`
	// Signer is the public key of the account signing key that signed it.
	Signer string `json:"signer,omitempty"`
	// Revoked is set, with the key never issued, for a key this service
	// revoked without having issued it, so that it cannot be issued later.
	Revoked bool `json:"revoked,omitempty"`
	// SelfService is set for a user a tenant issued itself.
	SelfService bool `json:"self_service,omitempty"`
	// Tags are the tags in the user's JWT, as signed. The server puts them
	// into the subjects of its role's templates ({{tag(x)}}) at every
	// connect, so a template change is checked against them
	// (checkRoleUsers). TagsRecorded tells a record that holds them from
	// one made before records held tags, whose user's tags are unknown.
	Tags         []string `json:"tags,omitempty"`
	TagsRecorded bool     `json:"tags_recorded,omitempty"`
}

// Equal reports whether u and v are the same record.
func (u User) Equal(v User) bool {
	return u.PublicKey == v.PublicKey && u.Account == v.Account && u.Name == v.Name &&
		u.IssuedAt == v.IssuedAt && u.ExpiresAt == v.ExpiresAt && u.Role == v.Role &&
		u.Signer == v.Signer && u.Revoked == v.Revoked && u.SelfService == v.SelfService &&
		slices.Equal(u.Tags, v.Tags) && u.TagsRecorded == v.TagsRecorded
}

// Store is the durable state of the service: accounts with their keys and
// current JWT, tombstones of deleted ones, and the records of issued users.
// Every method is safe for concurrent use. Reads return copies.
//
// Errors: ErrNotFound, ErrConflict (a name or key that must be new is
// not), ErrStale (the revision given is not the current one), and
// ErrUnavailable (the store cannot be reached; retrying may help). Any
// other error is a failure of the store itself.
type Store interface {
	// Account returns the account, live or tombstone, with public key pub.
	Account(ctx context.Context, pub string) (Account, error)
	// AccountByName returns the live account with the given name.
	AccountByName(ctx context.Context, name string) (Account, error)
	// Accounts returns every account, tombstones included, sorted by name
	// and then public key. When the records of some cannot be read, it
	// returns the others with an *UnreadableError naming those.
	Accounts(ctx context.Context) ([]Account, error)
	// CreateAccount stores a new live account and returns its revision.
	// It fails with ErrConflict when a live account has the name, or any
	// record has the public key.
	CreateAccount(ctx context.Context, a Account) (uint64, error)
	// UpdateAccount replaces the account whose current revision is rev
	// and returns the new revision. The name cannot change. A live name
	// stays taken until the account stops being live.
	UpdateAccount(ctx context.Context, a Account, rev uint64) (uint64, error)
	// RemoveAccount forgets an account and its user records entirely: a
	// failed create, or a tombstone past its retention.
	RemoveAccount(ctx context.Context, pub string, rev uint64) error

	// User returns the record of a user public key, in whichever account.
	User(ctx context.Context, userPub string) (User, error)
	// Users returns the user records of an account, in issue order (the
	// JetStream store, read by another instance or after a restart, can
	// list a durable record ahead of records in the background issued in
	// the same few milliseconds).
	Users(ctx context.Context, account string) ([]User, error)
	// UsersNamed returns the user records of an account with the given
	// name, in issue order.
	UsersNamed(ctx context.Context, account, name string) ([]User, error)
	// AddUser records an issued user. It fails with ErrConflict when the
	// key has a record, and ErrNotFound when the account has no live
	// record. With durable false it may return before the record is
	// durable (it is visible at once): the user's JWT needs nothing stored
	// to work, so a crash in that window loses a line of user.list, never
	// a key or a revocation. Durable false is for keys the service made,
	// which no one else can hold: the store checks them against what it
	// holds, but need not make the check durable across instances.
	AddUser(ctx context.Context, u User, durable bool) error

	// Broken reports why the store refuses every call until it is
	// reopened (a journal it could neither close nor replace, a bucket
	// deleted under it), nil while it serves; prov.status shows it.
	Broken() error

	// Close releases the store.
	Close() error
}

// Package provision is the provisioning domain: it creates, changes and
// deletes accounts and issues and revokes users. Every change to an account
// goes through one pipeline (publish): sign with the operator signing key,
// validate what was signed, make it durable in the store, push it to the
// resolver, and put things back as they were when the push fails.
//
// Requests for one account are serialized; requests for different accounts
// run in parallel.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/keypair"
	"github.com/natsprov/provisioner/keystore"
)

// Store is what the service needs of the key store.
type legacyStore interface {
	Account(pub string) (keystore.Account, bool)
	AccountByName(name string) (keystore.Account, bool)
	Accounts() []keystore.Summary
	Users(pub string) ([]keystore.User, error)
	UsersNamed(pub, name string) ([]keystore.User, error)
	PutAccount(ctx context.Context, a keystore.Account) error
	DeleteAccount(ctx context.Context, pub string) error
	AddUser(ctx context.Context, pub string, u keystore.User) error
}

var _ legacyStore = (*keystore.DirStore)(nil)

// Resolver is what the service needs of the resolver client.
type legacyResolver interface {
	Update(ctx context.Context, accountJWT string) (PushResult, error)
	Delete(ctx context.Context, token string) (PushResult, error)
	Lookup(ctx context.Context, pub string) (string, error)
}

// Config holds what a Service needs.
type Config struct {
	Operator *Operator
	Store    legacyStore
	Resolver legacyResolver
	// MaxJWTSize is the largest account JWT the servers take (their
	// max_payload). Default 1 MiB.
	MaxJWTSize int
	Logger     *slog.Logger
}

// Service carries out provisioning requests. It is safe for concurrent use.
type Service struct {
	op       *Operator
	store    legacyStore
	resolver legacyResolver
	maxJWT   int
	log      *slog.Logger

	locks   keyedMutex
	cache   sync.Map // account public key -> *accountState
	sysName atomic.Pointer[string]
	// Fresh keys made ahead of the requests that need them.
	userKeys    *keypair.Pool
	accountKeys *keypair.Pool
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Operator == nil || cfg.Store == nil || cfg.Resolver == nil {
		return nil, errors.New("provision: operator, store and resolver are required")
	}
	if cfg.MaxJWTSize <= 0 {
		cfg.MaxJWTSize = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		op:          cfg.Operator,
		store:       cfg.Store,
		resolver:    cfg.Resolver,
		maxJWT:      cfg.MaxJWTSize,
		log:         cfg.Logger,
		userKeys:    keypair.NewPool(nkeys.PrefixByteUser, 1024),
		accountKeys: keypair.NewPool(nkeys.PrefixByteAccount, 256),
	}, nil
}

// Close stops making keys ahead and wipes those not handed out.
func (s *Service) Close() {
	s.userKeys.Close()
	s.accountKeys.Close()
}

// accountState is what the service derives from a stored account: its
// decoded claims and its signing key pair. It is immutable: a change
// replaces it.
type accountState struct {
	jwt    string
	claims *jwt.AccountClaims
	signer nkeys.KeyPair
}

// state returns the decoded form of a stored account, decoding it only when
// its JWT changed since the last call. Callers must not modify the claims.
func (s *Service) state(a keystore.Account) (*accountState, error) {
	if v, ok := s.cache.Load(a.PublicKey); ok {
		if st := v.(*accountState); st.jwt == a.JWT {
			return st, nil
		}
	}
	claims, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		return nil, fmt.Errorf("decode stored JWT of %s: %w", a.PublicKey, err)
	}
	if len(a.SigningSeeds) == 0 {
		return nil, fmt.Errorf("account %s has no signing seed in the store", a.PublicKey)
	}
	signer, err := keypair.FromSeed(a.SigningSeeds[0].Bytes())
	if err != nil {
		return nil, fmt.Errorf("account %s: stored signing seed is unusable", a.PublicKey)
	}
	st := &accountState{jwt: a.JWT, claims: claims, signer: signer}
	s.cache.Store(a.PublicKey, st)
	if _, ok := s.store.Account(a.PublicKey); !ok {
		// Deleted meanwhile: do not keep its signing key around.
		s.cache.Delete(a.PublicKey)
	}
	return st, nil
}

// remember caches the state of an account that was just published, so the
// next request does not decode it again.
func (s *Service) remember(a keystore.Account, claims *jwt.AccountClaims, signer nkeys.KeyPair) {
	s.cache.Store(a.PublicKey, &accountState{jwt: a.JWT, claims: claims, signer: signer})
}

// systemName returns the system account's name, asking the resolver once.
func (s *Service) systemName(ctx context.Context) string {
	if n := s.sysName.Load(); n != nil {
		return *n
	}
	token, err := s.resolver.Lookup(ctx, s.op.SystemAccount)
	if err != nil {
		return ""
	}
	claims, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return ""
	}
	name := claims.Name
	s.sysName.Store(&name)
	return name
}

// target is an account a request names.
type target struct {
	pub    string
	system bool
}

// resolve turns ACCOUNT, a name or a public key, into the account's public
// key. The system account resolves with system set; an unknown name or key
// is ErrNotFound.
func (s *Service) resolve(ctx context.Context, ref string) (target, error) {
	ref = strings.TrimSpace(ref)
	switch {
	case ref == "":
		return target{}, fmt.Errorf("%w: \"account\" is required: an account name or public key (A...)", ErrInvalid)
	case looksLikeSeed(ref):
		return target{}, fmt.Errorf("%w: \"account\": %w", ErrInvalid, errSeedGiven)
	case nkeys.IsValidPublicAccountKey(ref):
		if ref == s.op.SystemAccount {
			return target{pub: ref, system: true}, nil
		}
		if _, ok := s.store.Account(ref); !ok {
			return target{}, fmt.Errorf("%w: no account with public key %s is managed by this service", ErrNotFound, ref)
		}
		return target{pub: ref}, nil
	case nkeys.IsValidPublicKey(ref):
		return target{}, fmt.Errorf("%w: \"account\" is a %s public key (%s); give an account name or an account public key (A...)", ErrInvalid, keyKind(ref), ref)
	}
	if a, ok := s.store.AccountByName(ref); ok {
		return target{pub: a.PublicKey}, nil
	}
	if ref == s.systemName(ctx) {
		return target{pub: s.op.SystemAccount, system: true}, nil
	}
	return target{}, fmt.Errorf("%w: no account named %q", ErrNotFound, ref)
}

// lockAccount resolves ref, refuses the system account, takes the account's
// lock for writing and loads it. The caller must call the returned unlock.
func (s *Service) lockAccount(ctx context.Context, ref, action string) (keystore.Account, func(), error) {
	return s.lockIn(ctx, ref, action, false)
}

// lockIn is lockAccount, with the lock taken for reading when shared is set:
// for work that changes nothing of the account but must not see a change
// that is still being pushed, and may be undone.
func (s *Service) lockIn(ctx context.Context, ref, action string, shared bool) (keystore.Account, func(), error) {
	t, err := s.resolve(ctx, ref)
	if err != nil {
		return keystore.Account{}, nil, err
	}
	if t.system {
		return keystore.Account{}, nil, fmt.Errorf("%w: the system account %s cannot be %s through this service", ErrForbidden, t.pub, action)
	}
	unlock := s.locks.lock("account:"+t.pub, shared)
	// Another request may have deleted it while this one waited.
	a, ok := s.store.Account(t.pub)
	if !ok {
		unlock()
		return keystore.Account{}, nil, fmt.Errorf("%w: account %s was deleted", ErrNotFound, t.pub)
	}
	return a, unlock, nil
}

// keyedMutex is a set of read-write mutexes, one per key, that exist only
// while used.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	sync.RWMutex
	refs int
}

// lock takes the lock of key, for reading when shared is set, and returns
// its unlock.
func (k *keyedMutex) lock(key string, shared bool) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	if shared {
		l.RLock()
	} else {
		l.Lock()
	}
	return func() {
		if shared {
			l.RUnlock()
		} else {
			l.Unlock()
		}
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// Package provision is the provisioning domain: it creates, changes and
// deletes accounts and issues and revokes users, and keeps every server's
// account resolver in line with its store.
//
// The store (Store) is the truth: every change is made durable there
// before any server hears of it, with the revision it was based on, so that
// several instances on one store cannot lose each other's changes. Changes
// to one account are combined: those that arrive while a version is being
// made join the next one, and each version's iat is strictly greater than
// the last (resolver sync keeps the greater iat). A version is pushed to
// every server; when the push fails the account is put back as it was. A
// reconciler (Reconcile, Run) pushes what a server lacks, finishes deletes
// in two phases, and reports accounts it does not know.
package provision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/keypair"
)

// Leader tells whether this instance may run the reconciler: with several
// instances on one store, one reconciles at a time. A nil Leader means this
// instance always may.
type Leader interface {
	// TryLease takes or renews the lease name for ttl and reports whether
	// this instance holds it.
	TryLease(ctx context.Context, name string, ttl time.Duration) (bool, error)
}

// Config holds what a Service needs.
type Config struct {
	Operator *Operator
	Store    Store
	Resolver Resolver
	// NextOperator loads the operator with the signing key an operator
	// signing-key rotation switches to (operator_signing_key_next); nil:
	// none is configured.
	NextOperator func() (*Operator, error)
	// Leader decides which instance reconciles; nil: this one.
	Leader Leader
	// Events receives every change; nil: none are reported.
	Events Events
	// Audit pages past events; nil: there is no audit log.
	Audit AuditLog
	// ServiceAccount is the public key of the service's own account, where
	// the self-service responder lives; "" disables self-service.
	ServiceAccount string
	// SubjectPrefix is the responder's subject prefix, which the
	// self-service imports of tenant accounts name. Default "prov".
	SubjectPrefix string
	// Instance names this instance in status replies and logs.
	Instance string
	// StoreKind is "file" or "jetstream", for status replies.
	StoreKind string
	// Version is the service's version, for status replies.
	Version string
	// Protected are accounts besides the system account that requests must
	// not change: the service's own account. They are not orphans either.
	Protected []string
	// MaxJWTSize is the largest account JWT the service signs: what the
	// servers take (their max_payload), less room for the reply that
	// carries it back. Default 1 MiB. SetMaxJWTSize changes it when the
	// connections land on other servers.
	MaxJWTSize int
	// DurableUserRecords makes user.create wait until the user's record is
	// durable. Off, the record is visible at once and durable within
	// moments; a key the caller sends is always recorded durably, since
	// the record is what refuses it a second time.
	DurableUserRecords bool
	// ReconcileInterval is the time between reconcile passes. Default 30s.
	ReconcileInterval time.Duration
	// ReconcileRate bounds the LOOKUPs per second of a pass, and its
	// pushes again for a cache resolver (see confirmations.staleCache).
	// Default 500.
	ReconcileRate int
	// TombstoneRetention is how long a finished delete's record is kept.
	// Default 30 days.
	TombstoneRetention time.Duration
	// RevocationMargin is how long after a revoked user's JWT expired its
	// revocation is dropped from the account JWT: the room for clocks that
	// run behind. Default 5 minutes.
	RevocationMargin time.Duration
	// Problem, when set, reports a problem of the instance found outside
	// this Service (another process took over its instance name); Status
	// says it in problem. Nil: none.
	Problem func() error
	Logger  *slog.Logger
}

// Service carries out provisioning requests. It is safe for concurrent use.
type Service struct {
	closeOnce sync.Once
	cfg       Config
	op        atomic.Pointer[Operator]
	// prevSigner is the operator signing key used before a rotation.
	prevSigner atomic.Pointer[string]
	// untrusted says which servers do not trust the operator signing key
	// in use, as the last pass found (checkSigner); nil when all do.
	untrusted atomic.Pointer[string]
	store     Store
	resolver  Resolver
	// maxJWT is Config.MaxJWTSize, as SetMaxJWTSize last set it.
	maxJWT atomic.Int64
	log    *slog.Logger

	locks keyedRWMutex // taken exclusively (lock)
	// signing is held shared by a user.create from the read of the
	// account's signing keys until the user is recorded, and exclusively
	// by a rotation that removes keys: no user is issued with a key the
	// account stops listing meanwhile.
	signing keyedRWMutex
	queues  queues
	// halted parents the work that does not end with its request (a
	// change's version, its take-back, the read-back after a push); Halt
	// cancels it.
	halted context.Context
	halt   context.CancelFunc
	// closing ends when Close begins: the background work that would go
	// on for as long as the service runs (a withdrawal tried again,
	// retryWithdraw) stops then, and Close waits for it in retries.
	closing  context.Context
	closeNow context.CancelFunc
	retryMu  sync.Mutex // orders retries.Add with closeNow
	retries  sync.WaitGroup
	cache    sync.Map // account public key -> *state
	confirm  confirmations
	// deletesOff is set once the servers refused a DELETE because they do
	// not allow deletes (allow_delete false), and cleared by a DELETE
	// carried out: the disabled version is then the end state, and a
	// server that holds it is left alone.
	deletesOff atomic.Bool
	// deletesProbe lets one DELETE a pass through while deletesOff is
	// set, to find out whether the servers allow deletes now (allow_delete
	// turned on and the servers restarted): with every re-sent DELETE held
	// back, only a new delete could clear deletesOff, and without one the
	// disabled versions stayed on the servers for good.
	deletesProbe atomic.Bool
	// abandoned are the failed creates whose take-back failed (abandon),
	// by public key, with whether a server may hold them: left live in
	// the store, the reconciler would push them live. Each pass takes
	// them back again, and pushes none of them meanwhile.
	abandoned sync.Map
	// reserved are the names of the protected accounts, by name.
	reserved atomic.Pointer[map[string]string]
	// Fresh keys made ahead of the requests that need them.
	userKeys    *keypair.Pool
	accountKeys *keypair.Pool

	rec reconciler
	// misfitsSettle is how old a version must be before a reconcile pass
	// revokes the users it finds that do not fit it
	// (revokeStandingMisfits): changeTimeout, the longest the instance
	// that stored it may still check it and put it back, plus
	// RevocationMargin: its age is read from its iat, set by that
	// instance's clock, which may run behind this one's.
	misfitsSettle time.Duration
	// misfitsSeen holds, by account, when a reconcile pass of this
	// instance first found users that its version's templates do not fit
	// (misfitsSince), on this instance's own clock.
	misfitsSeen sync.Map
}

// New returns a Service. Start its reconciler with Run.
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
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 30 * time.Second
	}
	if cfg.ReconcileRate <= 0 {
		cfg.ReconcileRate = 500
	}
	if cfg.TombstoneRetention <= 0 {
		cfg.TombstoneRetention = 30 * 24 * time.Hour
	}
	if cfg.RevocationMargin <= 0 {
		cfg.RevocationMargin = 5 * time.Minute
	}
	if cfg.StoreKind == "" {
		cfg.StoreKind = "file"
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = api.DefaultPrefix
	}
	if cfg.ServiceAccount != "" && !slices.Contains(cfg.Protected, cfg.ServiceAccount) {
		cfg.Protected = append(cfg.Protected, cfg.ServiceAccount)
	}
	s := &Service{
		cfg:         cfg,
		store:       cfg.Store,
		resolver:    cfg.Resolver,
		log:         cfg.Logger,
		userKeys:    keypair.NewPool(nkeys.PrefixByteUser, 1024),
		accountKeys: keypair.NewPool(nkeys.PrefixByteAccount, 256),

		misfitsSettle: changeTimeout + cfg.RevocationMargin,
	}
	s.op.Store(cfg.Operator)
	s.maxJWT.Store(int64(cfg.MaxJWTSize))
	s.rec.init()
	s.halted, s.halt = context.WithCancel(context.Background())
	s.closing, s.closeNow = context.WithCancel(context.Background())
	return s, nil
}

// SetMaxJWTSize sets the largest account JWT the service signs from now on
// (see Config.MaxJWTSize; n <= 0 keeps it). A reconnect may land a
// connection on another server of the cluster, with a smaller max_payload:
// a JWT made for the first was pushed to the second, which refused it
// ("maximum payload exceeded", answered 504, so a caller retried for
// ever), instead of being refused, before anything was made, as too large.
func (s *Service) SetMaxJWTSize(n int) {
	if n > 0 {
		s.maxJWT.Store(int64(n))
	}
}

// jwtLimit is the largest account JWT the service signs now.
func (s *Service) jwtLimit() int { return int(s.maxJWT.Load()) }

// closeWait bounds how long Close waits for the changes under way. Those
// are what the passes left (a re-sign or a prune, which runs under its own
// deadline, changeTimeout): requests are answered or cut (Halt) before
// Close. Past it they are cut too, as a kill would cut them, and the next
// start's reconcile pass makes them again; waited out, a push or store
// write that hung held a stop for 2 minutes, past any container's grace.
const closeWait = 3 * time.Second

// Close waits for the changes under way, at most closeWait before it cuts
// them (Halt), stops making keys ahead and wipes those not handed out, and
// the cached signing keys. Stop Run and the requests first.
// Close may be called more than once (a deferred Close beside a test's
// cleanup, a signal handler's beside main's); the later calls return at
// once.
func (s *Service) Close() {
	s.closeOnce.Do(s.close)
}

func (s *Service) close() {
	// Passes prov.reconcile started end first: they use the store.
	s.rec.mu.Lock()
	s.rec.end()
	s.rec.mu.Unlock()
	s.retryMu.Lock()
	s.closeNow()
	s.retryMu.Unlock()
	done := make(chan struct{})
	go func() {
		s.rec.manual.Wait()
		// Before the workers: a retry's change is handed to one.
		s.retries.Wait()
		s.queues.workers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("stopping: cutting the changes still under way; the next start's reconcile pass makes them again", "waited", closeWait)
		s.Halt()
		<-done
	}
	s.userKeys.Close()
	s.accountKeys.Close()
	s.cache.Range(func(k, _ any) bool {
		s.forget(k.(string))
		return true
	})
}

// Halt cuts the changes under way, as a kill would: their store writes and
// pushes end, and a change in doubt is left to the reconciler. A stop that
// cannot wait longer (the responder's StopWait) calls it; Close after it
// then returns at once.
func (s *Service) Halt() { s.halt() }

// operator returns the operator and the signing key the service signs
// with now; an operator signing-key rotation replaces it.
func (s *Service) operator() *Operator { return s.op.Load() }

// reservedName returns the protected account (the system account, the
// service's own) with the given name. Their names are asked of the
// resolver once. When a name could not be asked (no server answered),
// and name is none of those that could, the look-up's error is returned:
// name may be that account's, and "no account named" (404) told the
// caller of an outage that the system account does not exist.
func (s *Service) reservedName(ctx context.Context, name string) (string, bool, error) {
	names := s.reserved.Load()
	if names == nil {
		m := map[string]string{}
		complete := true
		var lerr error
		for _, pub := range append([]string{s.operator().SystemAccount}, s.cfg.Protected...) {
			c, err := s.remoteName(ctx, pub)
			if err != nil {
				complete = false // ask again next time
				if !errors.Is(err, ErrNotFound) && lerr == nil {
					lerr = err
				}
				continue
			}
			m[c.Name] = pub
		}
		if !complete {
			pub, ok := m[name]
			if !ok && lerr != nil {
				return "", false, lerr
			}
			return pub, ok, nil
		}
		names = &m
		s.reserved.Store(names)
	}
	pub, ok := (*names)[name]
	return pub, ok, nil
}

// remoteName reads the claims of an account the service does not store
// (the system account, the service's own) for its name: from the first
// server that answers with its JWT, checked as remoteAccount checks it. A
// name needs no newest copy; asked of every server (remoteAccount), the
// first create after a start waited, beside a cache resolver not yet
// known as one (it answers no LOOKUP, and is known from its first push's
// answer), the whole request timeout for each account. A first answer
// without the JWT (a server that lacks it) is ErrNotFound: asked again at
// the next create.
func (s *Service) remoteName(ctx context.Context, pub string) (*jwt.AccountClaims, error) {
	token, err := s.resolver.Lookup(ctx, pub)
	if err != nil {
		return nil, fmt.Errorf("look up account %s: %w", pub, err)
	}
	newest, c, err := NewestCopy(pub, []string{token})
	if err != nil {
		return nil, err
	}
	if newest == "" {
		return nil, fmt.Errorf("%w: the first server to answer holds no JWT for account %s", ErrNotFound, pub)
	}
	return c, nil
}

// protected reports whether requests must not change the account: the
// system account and the service's own.
func (s *Service) protected(pub string) bool {
	return pub == s.operator().SystemAccount || slices.Contains(s.cfg.Protected, pub)
}

// target is an account a request names.
type target struct {
	pub    string
	system bool
}

// resolve turns ACCOUNT, a name or a public key, into the account's public
// key. The system account resolves with system set; an unknown name or key,
// or a deleted account, is ErrNotFound.
func (s *Service) resolve(ctx context.Context, ref string) (target, error) {
	ref = strings.TrimSpace(ref)
	switch {
	case ref == "":
		return target{}, fmt.Errorf("%w: \"account\" is required: an account name or public key (A...)", ErrInvalid)
	case looksLikeSeed(ref):
		return target{}, fmt.Errorf("%w: \"account\": %w", ErrInvalid, errSeedGiven)
	case nkeys.IsValidPublicAccountKey(ref):
		if ref == s.operator().SystemAccount {
			return target{pub: ref, system: true}, nil
		}
		if slices.Contains(s.cfg.Protected, ref) {
			return target{pub: ref, system: true}, nil
		}
		a, err := s.store.Account(ctx, ref)
		if errors.Is(err, ErrNotFound) {
			return target{}, fmt.Errorf("%w: no account with public key %s is managed by this service", ErrNotFound, ref)
		}
		if err != nil {
			return target{}, err
		}
		if !a.Live() {
			return target{}, fmt.Errorf("%w: account %s (%q) was deleted at %s", ErrNotFound, ref, a.Name, time.Unix(a.DeletedAt, 0).UTC().Format(time.RFC3339))
		}
		return target{pub: ref}, nil
	case nkeys.IsValidPublicKey(ref):
		return target{}, fmt.Errorf("%w: \"account\" is a %s public key (%s); give an account name or an account public key (A...)", ErrInvalid, keyKind(ref), ref)
	}
	a, err := s.store.AccountByName(ctx, ref)
	if err == nil {
		return target{pub: a.PublicKey}, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return target{}, err
	}
	pub, ok, err := s.reservedName(ctx, ref)
	if err != nil {
		return target{}, err
	}
	if ok {
		return target{pub: pub, system: true}, nil
	}
	return target{}, fmt.Errorf("%w: no account named %q", ErrNotFound, ref)
}

// live resolves ref to a live account this service may change: the system
// account and the service's own are ErrForbidden.
func (s *Service) live(ctx context.Context, ref, action string) (Account, error) {
	t, err := s.resolve(ctx, ref)
	if err != nil {
		return Account{}, err
	}
	if t.system {
		what := "the system account"
		if t.pub != s.operator().SystemAccount {
			what = "the provisioner's own account"
		}
		return Account{}, fmt.Errorf("%w: %s %s cannot be %s through this service", ErrForbidden, what, t.pub, action)
	}
	a, err := s.store.Account(ctx, t.pub)
	if err != nil {
		return Account{}, err
	}
	if !a.Live() {
		return Account{}, fmt.Errorf("%w: account %s was deleted", ErrNotFound, t.pub)
	}
	return a, nil
}

// lockSigning takes the signing lock of own exclusively (none when own is
// "") and those of shared shared, in the order of their keys, and returns
// their unlock. In that order: two accounts' updates, each holding its own
// lock exclusively (a role change) and importing from the other, would
// otherwise each wait for the other's for good.
func (s *Service) lockSigning(own string, shared []string) (unlock func()) {
	keys := slices.Clone(shared)
	if own != "" {
		keys = append(keys, own)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	unlocks := make([]func(), 0, len(keys))
	for _, k := range keys {
		if k == own {
			unlocks = append(unlocks, s.signing.lock(k))
		} else {
			unlocks = append(unlocks, s.signing.rlock(k))
		}
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// keyedRWMutex is a set of read-write mutexes, one per key, that exist
// only while used: taken exclusively (lock) or shared (rlock).
type keyedRWMutex struct {
	mu sync.Mutex
	m  map[string]*keyedRWLock
}

type keyedRWLock struct {
	sync.RWMutex
	refs int
}

// rlock takes the lock of key shared and returns its unlock.
func (k *keyedRWMutex) rlock(key string) (unlock func()) {
	l := k.ref(key)
	l.RLock()
	return func() { l.RUnlock(); k.unref(key, l) }
}

// lock takes the lock of key exclusively and returns its unlock.
func (k *keyedRWMutex) lock(key string) (unlock func()) {
	l := k.ref(key)
	l.Lock()
	return func() { l.Unlock(); k.unref(key, l) }
}

func (k *keyedRWMutex) ref(key string) *keyedRWLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*keyedRWLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedRWLock{}
		k.m[key] = l
	}
	l.refs++
	return l
}

func (k *keyedRWMutex) unref(key string, l *keyedRWLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}

package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// RotateOperator switches the service to a new operator signing key
// (prov.operator.rotate) and re-signs every account with it: the managed
// accounts, their tombstones, the system account and the service's own.
// The key must already be in the operator JWT every server runs with: a
// server trusts only the keys of the operator JWT it started with, and an
// UPDATE signed by a key it does not trust still answers 200, so the
// servers are asked (VARZ) first, and a server that is down or does not
// trust the key stops the rotation before anything changes. It is
// resumable: run it again until nothing failed.
func (s *Service) RotateOperator(ctx context.Context, _ api.RotateOperatorRequest) (*api.RotateOperatorReply, error) {
	if s.cfg.NextOperator == nil {
		// The request goes to any one instance: with several, the
		// operator may have set the key on another one only, and then
		// add-signing-key, which refuses a rotation under way, is not
		// what to do.
		return nil, fmt.Errorf("%w: no new operator signing key is configured on instance %q: set operator_signing_key_next to the key `provisioner operator add-signing-key` wrote (it makes one when no rotation is under way) in every instance's config, restart every instance, and send it again", ErrInvalid, s.cfg.Instance)
	}
	start := time.Now()
	next, err := s.cfg.NextOperator()
	if err != nil {
		// LoadOperator's errors name the seed file's path (and call it
		// operator_signing_key): the deployment's secrets, for the log
		// only, not for the caller's reply.
		s.log.Error("operator rotation: operator_signing_key_next cannot be used", "error", err)
		return nil, fmt.Errorf("%w: operator_signing_key_next of instance %q cannot be used (unreadable, no operator signing key seed, or not one the operator JWT lists; the provisioner's log says which): fix it and send it again", ErrInvalid, s.cfg.Instance)
	}
	cur := s.operator()
	if next.PublicKey != cur.PublicKey {
		return nil, fmt.Errorf("%w: the new signing key belongs to operator %s, not %s", ErrInvalid, next.PublicKey, cur.PublicKey)
	}
	// The resolver knows the servers that answered its pings in time: one
	// that answers late (busy, paused, across a gateway) is not known for
	// seconds after a start, and the rotation, checking only the servers
	// known, re-signed the accounts there with a key it may not trust.
	if err := s.resolver.Discover(ctx); err != nil {
		s.log.Warn("operator rotation: could not ask every server to answer", "error", err)
	}
	trusted, err := s.serversTrust(ctx)
	if err != nil {
		return nil, err
	}
	rep := &api.RotateOperatorReply{SigningKey: next.SignerKey, Previous: cur.SignerKey, Servers: []string{}}
	if p := s.prevSigner.Load(); p != nil && cur.SignerKey == next.SignerKey {
		rep.Previous = *p // switched already, at a reconcile tick
	}
	for _, srv := range s.resolver.Servers() {
		keys, answered := trusted[srv.Name]
		switch {
		case !answered:
			// A server just restarted answers VARZ before the client
			// has noticed it is back; its answer is what counts.
			// How a server stops being expected: the resolver knows the
			// servers it has seen since the instance started.
			return nil, fmt.Errorf("%w: server %s did not answer (it is down, or slow); every server must run with the operator JWT that lists %s before the rotation, or be forgotten: a server down for server_forget_after (24h by default) is no longer expected, nor, once instance %q is restarted, one down then (a forgotten server that comes back must trust the new key too)", ErrConflict, srv.Name, next.SignerKey, s.cfg.Instance)
		case !slices.Contains(keys, next.SignerKey):
			return nil, fmt.Errorf("%w: server %s does not trust signing key %s yet: give it the new operator JWT and restart it", ErrConflict, srv.Name, next.SignerKey)
		}
		rep.Servers = append(rep.Servers, srv.Name)
	}
	if cur.SignerKey != next.SignerKey {
		s.switchOperator(cur, next)
	}
	// The other instances switch at their next reconcile tick
	// (adoptNextOperator); the accounts they sign meanwhile with the old
	// key are signed anew by the reconciler.

	accounts, err := s.store.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	fail := func(pub string, err error) {
		s.log.Warn("operator rotation: could not re-sign an account; run the rotation again", "account", pub, "error", err)
		mu.Lock()
		rep.Failed = append(rep.Failed, pub)
		mu.Unlock()
	}
	eachAccount(ctx, accounts, func(a Account) {
		if err := s.resignStored(ctx, a); err != nil {
			fail(a.PublicKey, err)
		}
	})
	if err := ctx.Err(); err != nil {
		// Accounts were left untouched: no report would be true.
		return nil, fmt.Errorf("operator rotation stopped before every account was re-signed (send it again): %w", err)
	}
	rep.Accounts = len(accounts)
	for _, pub := range append([]string{next.SystemAccount}, s.cfg.Protected...) {
		rep.Accounts++
		if err := s.resignRemote(ctx, pub, true); err != nil {
			fail(pub, err)
		}
	}
	rep.Resigned = rep.Accounts - len(rep.Failed)
	// The reply lists at most half of what a reply may carry, as
	// prov.reconcile's orphans: with hundreds of failures at a small
	// max_payload, the rotation was carried out and answered 500 "its
	// reply would be over max_payload", its list lost. Each failure is
	// logged above.
	if n := s.jwtLimit() / 2 / listedKeySize; len(rep.Failed) > n {
		rep.FailedOmitted = len(rep.Failed) - n
		rep.Failed = rep.Failed[:n:n]
	}
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	s.log.Info("operator rotation", "signing_key", next.SignerKey, "accounts", rep.Accounts, "failed", len(rep.Failed)+rep.FailedOmitted)
	return rep, nil
}

// adoptNextOperator switches this instance to the configured next operator
// signing key once every known server trusts it, so that every instance,
// not only the one that answered prov.operator.rotate, and this one after
// a restart, signs with it. It reports whether the key in use is the next
// one. Before every server trusts it, nothing changes.
func (s *Service) adoptNextOperator(ctx context.Context) bool {
	if s.cfg.NextOperator == nil {
		return false
	}
	next, err := s.cfg.NextOperator()
	if err != nil {
		s.log.Warn("operator_signing_key_next cannot be used", "error", err)
		return false
	}
	cur := s.operator()
	if next.PublicKey != cur.PublicKey {
		return false
	}
	// A server that refused VARZ is missing from trusted, and the others'
	// answers hold (checkSigner): one that does not trust the next key
	// says to switch back, or sign back, whatever the missing one says.
	// Only the switch itself needs every server's answer. (checkSigner,
	// right after in the pass, logs the refusal.)
	trusted, err := s.resolver.Operators(ctx)
	if cur.SignerKey == next.SignerKey {
		// The switch could only ask the servers the instance knew: one
		// down when it started, perhaps never given the new operator
		// JWT, comes back trusting only the old key, and every account
		// signed with the new one is unusable there once it loads it
		// again. Back on the key every server trusts, the pass signs
		// those accounts anew with it.
		if len(trusted) > 0 && s.revertOperator(next, trusted) {
			s.resignRemoteBack(ctx, next.SignerKey)
			return false
		}
		return true
	}
	if len(trusted) == 0 {
		return false
	}
	if err != nil || !everyServerTrusts(s.resolver.Servers(), trusted, next.SignerKey) {
		// Switched back, or restarted on the old key since: the system
		// account and the service's own may still be signed by the next
		// key, which a server does not trust.
		if mustSignBack(trusted, cur.SignerKey, next.SignerKey) {
			s.resignRemoteBack(ctx, next.SignerKey)
		}
		return false
	}
	// Every server known trusts the key; a server slow to answer may not
	// be known yet (the first pass runs right after a start): ask every
	// server, and every one again, before the switch.
	if err := s.resolver.Discover(ctx); err != nil {
		return false
	}
	if trusted, err = s.resolver.Operators(ctx); err != nil || !everyServerTrusts(s.resolver.Servers(), trusted, next.SignerKey) {
		return false
	}
	s.switchOperator(cur, next)
	return true
}

// everyServerTrusts tells whether each of servers answered trusting key.
func everyServerTrusts(servers []Server, trusted map[string][]string, key string) bool {
	for _, srv := range servers {
		if !slices.Contains(trusted[srv.Name], key) {
			return false
		}
	}
	return true
}

// checkSigner finds the servers whose operator JWT does not list the
// operator signing key this instance signs with (an instance left on the
// old key after `operator remove-signing-key`, or configured with a key
// of another operator). A server stores whatever UPDATE it gets and
// answers 200, and then cannot use the account: every change such an
// instance pushes cuts the account's users off there, without an error.
// It is logged at ERROR at every pass while it lasts, and prov.status and
// the health endpoint name it (SignerProblem).
// It returns the keys each server that answered trusts (nil when VARZ
// went unanswered).
func (s *Service) checkSigner(ctx context.Context) map[string][]string {
	// A server that answered VARZ with an error (or unreadably) is missing
	// from the map, as one that did not answer in time; the others'
	// answers hold (Operators returns them with the error). Thrown away,
	// one such server kept the problem from being named, or cleared, for
	// as long as it refused.
	trusted, err := s.resolver.Operators(ctx)
	if err != nil {
		s.log.Warn("a server did not tell which operator keys it trusts; the others' answers are used", "error", err)
	}
	if len(trusted) == 0 {
		return nil // VARZ unanswered: nothing learned
	}
	key := s.operator().SignerKey
	var not []string
	for name, keys := range trusted {
		if !slices.Contains(keys, key) {
			not = append(not, name)
		}
	}
	if len(not) == 0 {
		s.untrusted.Store(nil)
		return trusted
	}
	slices.Sort(not)
	msg := fmt.Sprintf("server(s) %s do not trust operator signing key %s, which this instance signs with: every account it pushes there is unusable; set operator_signing_key to a key their operator JWT lists, and restart", strings.Join(not, ", "), key)
	s.untrusted.Store(&msg)
	s.log.Error("the servers do not trust this instance's operator signing key", "signing_key", key, "servers", not)
	return trusted
}

// passSigning is what a reconcile pass signs anew, from checkSigner's
// answers and whether the instance switched to the next key (rotated).
type passSigning struct {
	// resign tells whether an account signed by issuer is signed anew
	// with the key in use.
	resign func(issuer string) bool
	// ok is false when a server does not trust the key in use: every
	// version the pass signed would be unusable there, so it signs none,
	// not even to prune revocations; an instance whose key they trust
	// does it.
	ok bool
}

// passSigner says what a pass signs anew: after this instance switched to
// the next key (rotated), every account another key signed; otherwise,
// when every server that answered trusts the key in use, an account signed
// by a key a server does not trust. An instance left on the old key after
// `operator finish` signs changes with it, which every server trusts until
// `operator remove-signing-key` is rolled out; then those accounts are
// unusable, and no instance has a next key configured any more to re-sign
// them: they stayed so for good.
func (s *Service) passSigner(rotated bool, trusted map[string][]string) passSigning {
	key := s.operator().SignerKey
	never := func(string) bool { return false }
	for _, keys := range trusted {
		if !slices.Contains(keys, key) {
			return passSigning{resign: never}
		}
	}
	switch {
	case rotated:
		return passSigning{resign: func(issuer string) bool { return issuer != key }, ok: true}
	case len(trusted) == 0:
		return passSigning{resign: never, ok: true} // VARZ unanswered: nothing learned
	}
	return passSigning{ok: true, resign: func(issuer string) bool {
		if issuer == key {
			return false
		}
		for _, keys := range trusted {
			if !slices.Contains(keys, issuer) {
				return true
			}
		}
		return false
	}}
}

// SignerProblem is what checkSigner found at the last pass: nil when every
// server that answered trusts the operator signing key in use.
func (s *Service) SignerProblem() error {
	if p := s.untrusted.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// sealProblemer is a store shared by instances (kvstore) that can find
// account records sealed with a seal key this instance does not hold.
type sealProblemer interface{ SealProblem() error }

// SealProblem is the store's report of account records sealed with a seal
// key this instance lacks (another instance given another seal_key, or a
// key rotated away too early); nil when there is none, or the store
// cannot have any.
func (s *Service) SealProblem() error {
	if p, ok := s.store.(sealProblemer); ok {
		return p.SealProblem()
	}
	return nil
}

// damageReporter is a store that can find, while it serves, records it
// holds that cannot be read (kvstore: another instance's bucket, written
// by hand or by a newer provisioner).
type damageReporter interface{ Damage() error }

// Damage is the store's report of the records it holds that cannot be
// read for another cause than their seal key; nil when there is none, or
// the store cannot tell.
func (s *Service) Damage() error {
	if d, ok := s.store.(damageReporter); ok {
		return d.Damage()
	}
	return nil
}

// revertOperator goes back from next to the operator signing key the
// instance started with when a server that answered does not trust next
// while every one that answered trusts that key, and reports whether it
// did.
func (s *Service) revertOperator(next *Operator, trusted map[string][]string) bool {
	start := s.cfg.Operator
	if start.SignerKey == next.SignerKey {
		return false
	}
	var not []string
	for name, keys := range trusted {
		if !slices.Contains(keys, start.SignerKey) {
			return false
		}
		if !slices.Contains(keys, next.SignerKey) {
			not = append(not, name)
		}
	}
	if len(not) == 0 {
		return false
	}
	slices.Sort(not)
	s.prevSigner.Store(nil)
	s.op.Store(start)
	s.log.Error("operator signing key switched back: server(s) that were not known at the switch do not trust the new key; give them the new operator JWT and restart them", "signing_key", start.SignerKey, "untrusted", next.SignerKey, "servers", not)
	return true
}

// mustSignBack tells whether a server that answered does not trust the
// next key while every one that answered trusts the key in use: an
// account the next key signed is unusable there.
func mustSignBack(trusted map[string][]string, key, next string) bool {
	not := false
	for _, keys := range trusted {
		if !slices.Contains(keys, key) {
			return false
		}
		if !slices.Contains(keys, next) {
			not = true
		}
	}
	return not
}

// resignRemoteBack signs the system account and the service's own anew
// with the key in use when a server holds a copy signed by untrusted, the
// next key, which a server does not trust (mustSignBack). After a switch
// back (revertOperator), prov.operator.rotate had signed them with the
// next key, and the passes push neither: a server that does not trust it
// stores them all the same (an UPDATE, or its resolver's sync, which takes
// any newer copy), cannot load the service's account from then on, and at
// its next restart does not start at all ("Can't set system account:
// account validation failed"). Each pass checks again, so that one that
// failed, or an instance restarted meanwhile, does it later.
func (s *Service) resignRemoteBack(ctx context.Context, untrusted string) {
	for _, pub := range append([]string{s.operator().SystemAccount}, s.cfg.Protected...) {
		copies, err := s.resolver.LookupAll(ctx, pub)
		if err != nil {
			s.log.Warn("could not read an account the next operator signing key may have signed", "account", pub, "error", err)
			continue
		}
		if !slices.ContainsFunc(copies, func(token string) bool {
			c, err := jwt.DecodeAccountClaims(token)
			return err == nil && c.Issuer == untrusted
		}) {
			continue
		}
		// Not held for a server that is down (false): a server up now
		// cannot use the copy signed by the key it does not trust, and
		// would not start at its next restart; that is worse than the
		// rare newer copy only a server that is down holds.
		if err := s.resignRemote(ctx, pub, false); err != nil {
			s.log.Warn("operator signing key switched back: could not sign an account anew with the key every server trusts; the next pass tries again", "account", pub, "error", err)
		}
	}
}

// switchOperator makes next the operator signing key in use. Its callers
// found every server known trusting next: what checkSigner found of the
// old key (servers that do not trust it) no longer holds, and prov.status
// and the health endpoint kept naming it until the next pass.
func (s *Service) switchOperator(cur, next *Operator) {
	prev := cur.SignerKey
	s.prevSigner.Store(&prev)
	s.op.Store(next)
	s.untrusted.Store(nil)
	s.log.Info("operator signing key switched: every server trusts the new key", "signing_key", next.SignerKey, "previous", prev)
}

// resignStored signs a stored account's current version anew with the
// operator signing key in use: a live one through the change path (a new
// version), a tombstone's disabled version in place. An expired account is
// signed anew too, keeping its expiry: left on the old key, `operator
// finish` refused for as long as it stayed expired (it finds every account
// on the servers signed by the new key first), and it is usable again
// once renewed.
func (s *Service) resignStored(ctx context.Context, a Account) error {
	if a.Live() {
		c, err := decodeAccount(a.JWT)
		if err != nil {
			return err
		}
		if c.Issuer == s.operator().SignerKey {
			return nil // already (a rotation run again)
		}
		if err := s.submitResign(ctx, a.PublicKey); !errors.Is(err, errAbandoned) {
			return err
		}
		return nil // the next pass takes it back, signed with the key in use
	}
	unlock := s.locks.lock("account:" + a.PublicKey)
	cur, err := s.account(ctx, a.PublicKey, true)
	if err == nil && cur.Live() {
		// Put back live since a was listed (a delete whose push failed,
		// on this instance or another): re-signed in place as a
		// tombstone's disabled version, it lost its JetStream limits
		// and imports, stored live. The change path takes the lock.
		unlock()
		return s.resignStored(ctx, cur)
	}
	defer unlock()
	if err != nil {
		return err
	}
	c, err := decodeAccount(cur.JWT)
	if err != nil {
		return err
	}
	// One over the limit in use is signed anew (slimmed) even on the key
	// in use: pushed as it was to servers whose max_payload went down, it
	// was refused "maximum payload exceeded" at every pass, and the
	// delete waiting for them never finished.
	if c.Issuer == s.operator().SignerKey && !stillServes(c) && len(cur.JWT) <= s.jwtLimit() {
		return nil
	}
	// A disabled version from before disable turned JetStream and imports
	// off loses them now.
	c.Limits.JetStreamLimits, c.Limits.JetStreamTieredLimits = jwt.JetStreamLimits{}, nil
	c.Imports = nil
	// One signed when the limit was larger (a reconnect to a server with
	// a smaller max_payload) is slimmed to fit, as a new one is: refused
	// "too large", it stayed on the old key for good, as nobody can edit
	// a deleted account smaller, and the rotation never finished.
	s.slim(c)
	token, err := s.signNext(ctx, c)
	if err != nil {
		return err
	}
	next := cur
	next.JWT = token
	if _, err := s.store.UpdateAccount(ctx, next, cur.Revision); err != nil {
		return err
	}
	if cur.Phase == PhaseDisabled {
		res, err := s.resolver.Update(ctx, token)
		s.confirm.record(cur.PublicKey, c.ID, res)
		return err
	}
	return nil
}

// resignRemote signs an account the service does not store (the system
// account, the service's own) anew: every server's copy is read, and
// unless all of them are signed with the key in use, the newest is signed
// with it (when it is not already) and pushed. Reading only the first
// server's copy missed a server that was away through the rotation and
// came back with the old key's version. With holdForDown, nothing is
// signed anew while a known server is down (ErrUnavailable naming it): it
// may hold a newer copy than the servers that answered, and the version
// signed on theirs, issued later, would replace it everywhere once it is
// back (resolver sync keeps the later iat).
func (s *Service) resignRemote(ctx context.Context, pub string, holdForDown bool) error {
	defer s.locks.lock("account:" + pub)()
	copies, err := s.resolver.LookupAll(ctx, pub)
	if err != nil {
		return fmt.Errorf("look up account %s: %w", pub, err)
	}
	key := s.operator().SignerKey
	var newest string
	var nc *jwt.AccountClaims
	// No reconciler pushes this account again: a server whose copy is
	// missing from the answers may hold the old key's. It is pushed to
	// as well, and the push's answers, which name their servers, tell
	// whether it got the new one. (A cache resolver not known as one yet
	// answers no LOOKUP, but answers the push.)
	full := 0
	for _, srv := range s.resolver.Servers() {
		if srv.Up && !srv.Cache {
			full++
		}
	}
	stale := len(copies) < full
	for _, token := range copies {
		if token == "" {
			continue
		}
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			return fmt.Errorf("the JWT of account %s: %w", pub, err)
		}
		if c.Issuer != key {
			stale = true
		}
		if nc == nil || c.IssuedAt > nc.IssuedAt {
			newest, nc = token, c
		}
	}
	if nc == nil {
		return fmt.Errorf("%w: the servers hold no JWT for account %s", ErrNotFound, pub)
	}
	if !stale {
		return nil
	}
	if nc.Issuer != key {
		if down := s.downServers(); holdForDown && len(down) > 0 {
			return fmt.Errorf("%w: server(s) %s, down, may hold a newer copy of account %s than the servers that answered: it is signed anew once they are back (send the rotation again then)", ErrUnavailable, strings.Join(down, ", "), pub)
		}
		if newest, err = s.signNext(ctx, nc); err != nil {
			return err
		}
	}
	res, err := s.resolver.Update(ctx, newest)
	if err != nil {
		return err
	}
	// A push that a server did not answer is no error to Update (the
	// reconciler pushes a stored account again); this one nobody pushes
	// again.
	var missed []string
	for _, r := range res {
		if !r.Answered {
			missed = append(missed, r.Server)
		}
	}
	if len(missed) > 0 {
		return fmt.Errorf("%w: push account %s: no answer from %s", ErrTimeout, pub, strings.Join(missed, ", "))
	}
	return nil
}

// remoteAccount reads an account the service does not store (the system
// account, the service's own) from the servers, and checks its JWT.
func (s *Service) remoteAccount(ctx context.Context, pub string) (string, *jwt.AccountClaims, error) {
	token, c, _, err := s.newestCopy(ctx, pub)
	if err != nil {
		return "", nil, err
	}
	if token == "" {
		return "", nil, fmt.Errorf("%w: the servers hold no JWT for account %s", ErrNotFound, pub)
	}
	return token, c, nil
}

// downServers names the known servers with a full resolver (or not known
// to have a cache one) that are down, sorted. Each may hold a newer copy
// of an account the service does not store than the servers that
// answered a LOOKUP: a version signed anew on the newest answer is issued
// later, and resolver sync keeps it over that copy once the server is
// back.
func (s *Service) downServers() []string {
	var down []string
	for _, srv := range s.resolver.Servers() {
		if !srv.Up && !srv.Cache {
			down = append(down, srv.Name)
		}
	}
	return down
}

// newestCopy asks every server for its copy of an account the service
// does not store and returns the newest (by iat), or "" when no server
// holds one, and whether a server that answered holds another copy or
// none. Each server answers a LOOKUP itself, empty when it holds no copy,
// and servers may hold different versions (one was down through a push):
// the first answer may be an empty one or an older version, and a change
// built on that one and pushed would undo the newer.
func (s *Service) newestCopy(ctx context.Context, pub string) (string, *jwt.AccountClaims, bool, error) {
	copies, err := s.resolver.LookupAll(ctx, pub)
	if err != nil {
		return "", nil, false, fmt.Errorf("look up account %s: %w", pub, err)
	}
	newest, nc, err := NewestCopy(pub, copies)
	if err != nil {
		return "", nil, false, err
	}
	behind := slices.ContainsFunc(copies, func(token string) bool { return token != newest })
	return newest, nc, behind, nil
}

// NewestCopy returns the newest (by iat) of the servers' copies of an
// account's JWT, "" where a server holds none, or "" and nil when none
// holds one. A copy that is no account JWT is an error.
func NewestCopy(pub string, copies []string) (string, *jwt.AccountClaims, error) {
	var newest string
	var nc *jwt.AccountClaims
	for _, token := range copies {
		if token == "" {
			continue
		}
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			return "", nil, fmt.Errorf("the JWT of account %s: %w", pub, err)
		}
		if nc == nil || c.IssuedAt > nc.IssuedAt {
			newest, nc = token, c
		}
	}
	return newest, nc, nil
}

// signNext signs claims as the account's next version: after the second
// of their current iat, with the operator signing key in use.
func (s *Service) signNext(ctx context.Context, c *jwt.AccountClaims) (string, error) {
	if err := afterIssue(ctx, c.IssuedAt); err != nil {
		return "", err
	}
	return s.sign(c)
}

// serversTrust asks every server which operator keys it trusts. A server
// restarted a moment ago is still marked down and the ask does not wait
// for it, so a known server missing from the answers is asked again a
// few times before the rotation calls it down.
func (s *Service) serversTrust(ctx context.Context) (map[string][]string, error) {
	for attempt := 1; ; attempt++ {
		trusted, err := s.resolver.Operators(ctx)
		if err != nil {
			return nil, fmt.Errorf("ask the servers which operator keys they trust: %w", err)
		}
		missing := false
		for _, srv := range s.resolver.Servers() {
			if _, ok := trusted[srv.Name]; !ok {
				missing = true
			}
		}
		if !missing || attempt == 4 {
			return trusted, nil
		}
		select {
		case <-ctx.Done():
			return trusted, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

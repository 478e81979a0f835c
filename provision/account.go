package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// CreateAccount creates an account with a fresh identity key and a fresh
// account signing key, signs it with the operator signing key, makes its
// keys durable and pushes it. When the push fails, the account is taken
// back: forgotten when no server can hold it, otherwise turned into a
// tombstone whose delete the reconciler finishes.
func (s *Service) CreateAccount(ctx context.Context, req api.CreateAccountRequest) (*api.AccountReply, error) {
	name, err := checkName("name", req.Name)
	if err != nil {
		return nil, err
	}
	reserved, ok, err := s.reservedName(ctx, name)
	if err != nil {
		// The name may be the system account's: it cannot be told.
		return nil, err
	}
	if ok {
		what := "the system account"
		if reserved != s.operator().SystemAccount {
			what = "the provisioner's own account"
		}
		return nil, fmt.Errorf("%w: %q is the name of %s", ErrConflict, name, what)
	}
	// No look-up of the name first: the store's create refuses a taken
	// name, and on a shared store a look-up of a new name is a read of the
	// bucket (the mirror has not seen it) on every create.
	ident, err := s.accountKeys.Get()
	if err != nil {
		return nil, fmt.Errorf("create account key: %w", err)
	}
	defer ident.Wipe()
	signer, err := s.accountKeys.Get()
	if err != nil {
		return nil, fmt.Errorf("create account signing key: %w", err)
	}
	pub, _ := ident.PublicKey()
	signerPub, _ := signer.PublicKey()
	identSeed, _ := ident.Seed()
	signerSeed, _ := signer.Seed()

	claims := jwt.NewAccountClaims(pub)
	claims.Name = name
	if err := checkDescription("description", req.Description); err != nil {
		return nil, err
	}
	claims.Description = req.Description
	claims.SigningKeys.Add(signerPub)
	if err := mergeAccountFields(claims, req.Limits, req.DefaultPermissions); err != nil {
		return nil, err
	}
	if err := setTags(&claims.Tags, req.Tags); err != nil {
		return nil, err
	}
	rec := Account{
		PublicKey:    pub,
		Name:         name,
		IdentitySeed: Seed(identSeed),
		SigningKeys:  []SigningKey{{Seed: Seed(signerSeed)}},
		Phase:        PhaseLive,
	}
	if err := setRoles(&rec, claims, req.Roles, s.newSigningKey); err != nil {
		return nil, err
	}
	if err := checkExports(req.Exports); err != nil {
		return nil, err
	}
	// A copy: Encode sorts the exports in place, and the caller's slice
	// (a Go client's, reused for the next request) came back reordered.
	claims.Exports = slices.Clone(req.Exports)
	if exporters := s.activationSigners(ctx, req.Imports); len(exporters) > 0 {
		// Activations are signed with keys their exporters still list
		// once the account is pushed (activationSigners).
		defer s.lockSigning("", exporters)()
	}
	if err := s.setImports(ctx, &rec, claims, req.Imports); err != nil {
		return nil, err
	}
	if err := s.setSelfService(&rec, claims, AccountSettings{SelfService: req.SelfService, Quota: req.SelfServiceQuota, CallerRole: req.SelfServiceRole}); err != nil {
		return nil, err
	}
	if err := setExpiry(claims, req.ExpiresIn); err != nil {
		return nil, err
	}
	if err := checkBearer(claims); err != nil {
		return nil, err
	}
	if err := checkAccountTags(claims); err != nil {
		return nil, err
	}
	token, err := s.sign(claims)
	if err != nil {
		return nil, err
	}
	rec.JWT = token
	// The reconciler must not push the account before its create is done
	// or taken back.
	defer s.locks.lock("account:" + pub)()
	// The keys are durable before any server hears of the account.
	rev, err := s.store.CreateAccount(ctx, rec)
	if errors.Is(err, ErrUnavailable) {
		// It may have landed all the same: find out, with a deadline of
		// its own, before saying it failed.
		lctx, cancel := context.WithTimeout(s.halted, changeTimeout)
		if r, ok, known := s.landed(lctx, pub, token); ok {
			rev, err = r, nil
		} else if !known {
			err = inDoubt("the new account "+pub, err)
		}
		cancel()
	}
	if errors.Is(err, ErrConflict) {
		if a, lerr := s.store.AccountByName(ctx, name); lerr == nil {
			return nil, fmt.Errorf("%w: an account named %q exists already (%s)", ErrConflict, name, a.PublicKey)
		}
		return nil, fmt.Errorf("%w: an account named %q exists already", ErrConflict, name)
	}
	if err != nil {
		return nil, fmt.Errorf("store account %s: %w", pub, err)
	}
	rec.Revision = rev
	// Only an import of another account is checked again: the service's
	// own (self-service) has nothing to wait for, and waiting, a
	// self-service create failed (503) while the store's watcher caught
	// up.
	if slices.ContainsFunc(claims.Imports, func(im *jwt.Import) bool { return im != nil && im.Name != selfImportName }) {
		if err := s.importsAgain(ctx, rev, &rec, claims); err != nil {
			// Stored, pushed nowhere: taken back as a create whose push
			// failed is.
			if !s.abandon(rec, claims, false) {
				return nil, fmt.Errorf("%w: new account %q (%s): %v, and it could not be taken back out of the store, which keeps it: this instance takes it back when the store lets it, but another instance's reconciler pushes it live meanwhile", ErrInDoubt, name, pub, err)
			}
			return nil, err
		}
	}
	res, err := s.resolver.Update(ctx, token)
	s.confirm.record(pub, claims.ID, res)
	if err != nil {
		if !s.abandon(rec, claims, mayHaveStored(res, err)) {
			// The store keeps the failed create live, remembered as
			// failed in this instance's memory only: after a restart, or
			// by another instance, it is pushed as any account is. Told
			// the push's own error (a 502 says nothing was changed), its
			// caller took it for failed.
			return nil, fmt.Errorf("%w: push new account %q (%s) failed (%v), and it could not be taken back out of the store, which keeps it: this instance takes it back when the store lets it, but another instance's reconciler pushes it live meanwhile, and a restart before that leaves it live", ErrInDoubt, name, pub, err)
		}
		return nil, fmt.Errorf("push new account %q (%s): %w", name, pub, err)
	}
	// Another instance may have changed the account during the push.
	s.afterPush(ctx, pub, token)
	if len(rec.SigningKeys) == 1 {
		s.cache.Store(pub, &state{jwt: token, claims: claims, signers: map[string]nkeys.KeyPair{"": signer}, from: rec.SigningKeys})
	}
	s.log.Info("account created", "account", pub, "name", name, "servers", res.Stored(), "roles", len(rec.SigningKeys)-1, "self_service", rec.Settings.SelfService)
	s.emit(ctx, api.Event{Type: api.EventAccountCreated, Account: pub, AccountName: name})
	rep := &api.AccountReply{Account: api.Account{Name: name, PublicKey: pub, JWT: token}}
	rep.Resolver, rep.ResolverOmitted = wireResult(res)
	return rep, nil
}

// abandon takes back an account whose create failed. When no server can
// hold it, the store forgets it. Otherwise it becomes a tombstone: its
// disabled version is pushed, and the delete is finished now or by the
// reconciler, so that no key of a failed create is left as a live
// account. The caller holds the account's lock.
//
// When that fails (the store full, or unreachable), the failed create is
// still live in the store, where the reconciler took it for an account
// like any other and pushed it live, while its caller had been told it
// failed. So it is remembered: each reconcile pass takes it back again
// (retakeAbandoned), and pushes it nowhere meanwhile. It reports whether
// the account was taken back.
func (s *Service) abandon(rec Account, claims *jwt.AccountClaims, stored bool) bool {
	if s.takeBack(rec, claims, stored) {
		s.abandoned.Delete(rec.PublicKey)
		return true
	}
	s.abandoned.Store(rec.PublicKey, stored)
	return false
}

// retakeAbandoned takes back again each failed create whose take-back
// failed, unless it is gone or deleted meanwhile.
func (s *Service) retakeAbandoned(ctx context.Context) {
	s.abandoned.Range(func(k, _ any) bool {
		pub := k.(string)
		unlock := s.locks.lock("account:" + pub)
		defer unlock()
		// Whether a server may hold it is read under the lock: a change
		// that held the lock meanwhile may have pushed it
		// (mayHoldAbandoned). Read before the wait, a take-back took an
		// account a server holds live for one no server holds, and on
		// the file store forgot its keys: an orphan left live for good.
		v, ok := s.abandoned.Load(pub)
		if !ok {
			return true
		}
		stored := v.(bool)
		cur, err := s.account(ctx, pub, true)
		switch {
		case errors.Is(err, ErrNotFound) || err == nil && !cur.Live():
			s.abandoned.Delete(pub)
			return true
		case err != nil:
			s.log.Warn("could not read a failed create to take it back; the next pass tries again", "account", pub, "error", err)
			return ctx.Err() == nil
		}
		claims, err := decodeAccount(cur.JWT)
		if err != nil {
			s.log.Error("could not read a failed create to take it back; the next pass tries again", "account", pub, "error", err)
			return ctx.Err() == nil
		}
		s.abandon(cur, claims, stored)
		return ctx.Err() == nil
	})
}

// mayHoldAbandoned notes that a server may hold an account, when it is a
// failed create not taken back yet: a later version of it was pushed. The
// caller holds the account's lock.
func (s *Service) mayHoldAbandoned(pub string, stored bool) {
	if _, ok := s.abandoned.Load(pub); ok && stored {
		s.abandoned.Store(pub, true)
	}
}

// isAbandoned reports whether a live account is a failed create not taken
// back yet, which no pass may push.
func (s *Service) isAbandoned(pub string) bool {
	_, ok := s.abandoned.Load(pub)
	return ok
}

// errAbandoned refuses a new version of a failed create not taken back
// yet: see resign.
var errAbandoned = errors.New("a failed create not taken back yet")

// resign is the change that signs an account anew, unchanged otherwise
// (the change path prunes it and signs with the operator signing key in
// use): what an operator rotation and a reconcile pass submit. It refuses,
// under the account's lock, a failed create not taken back yet: pushed, it
// would be live, and the rotation (or a pass that waited for the lock of a
// create whose take-back then failed) pushed it live although its caller
// was told it failed; the next pass takes it back instead.
func (s *Service) resign(a *Account, _ *jwt.AccountClaims) error {
	if a.Live() && s.isAbandoned(a.PublicKey) {
		return errAbandoned
	}
	return nil
}

// takeBack is abandon's work; it reports whether the account was taken
// back (forgotten, or a tombstone in the store).
func (s *Service) takeBack(rec Account, claims *jwt.AccountClaims, stored bool) bool {
	ctx, cancel := context.WithTimeout(s.halted, changeTimeout)
	defer cancel()
	log := s.log.With("account", rec.PublicKey, "name", rec.Name)
	// On a shared store, another instance's reconciler may have pushed the
	// account meanwhile (this lock is this instance's alone): only a
	// tombstone is sure to take it back from the servers.
	if _, shared := s.store.(latestReader); !stored && !shared {
		if err := s.store.RemoveAccount(ctx, rec.PublicKey, rec.Revision); err != nil {
			log.Error("could not forget the keys of a failed create; this instance's reconciler takes it back at its next pass (a restart before that leaves it live, as the store holds it: its caller was answered 504 in doubt)", "error", err)
			return false
		}
		return true
	}
	var off *jwt.AccountClaims
	var token string
	var tomb Account
	for attempt := 0; ; attempt++ {
		var err error
		off, err = claimsCopy(claims)
		if err == nil {
			s.disable(off)
			err = afterIssue(ctx, claims.IssuedAt)
		}
		if err == nil {
			token, err = s.sign(off)
		}
		if err != nil {
			log.Error("could not sign the disabled version of a failed create; this instance's reconciler takes it back at its next pass (a restart before that leaves it live, as the store holds it: its caller was answered 504 in doubt)", "error", err)
			return false
		}
		tomb = tombstone(rec, token)
		// A tombstone written in doubt that did not land left the failed
		// create live in the store, where any instance's reconciler
		// pushed it live, while its caller was told it failed.
		rev, err := s.writeUntilLanded(ctx, rec.PublicKey, token, func() (uint64, error) {
			return s.store.UpdateAccount(ctx, tomb, rec.Revision)
		})
		if errors.Is(err, ErrStale) && attempt < maxStaleRetries {
			// Another instance changed the account meanwhile (a change
			// by someone who found it in the store, or its reconciler's
			// new version), and may have pushed it. The create failed
			// all the same, and its caller is told so: take back the
			// latest version, or leave it to the delete another
			// instance made. Giving up here left the failed create
			// live, in the store and on the servers, for good.
			cur, err := s.account(ctx, rec.PublicKey, true)
			if err != nil {
				log.Error("could not read back a failed create changed meanwhile; this instance's reconciler takes it back at its next pass (a restart before that leaves it live, as the store holds it: its caller was answered 504 in doubt)", "error", err)
				return false
			}
			if !cur.Live() {
				return true // deleted meanwhile: that delete takes it back
			}
			c, err := decodeAccount(cur.JWT)
			if err != nil {
				log.Error("could not read back a failed create changed meanwhile; this instance's reconciler takes it back at its next pass (a restart before that leaves it live, as the store holds it: its caller was answered 504 in doubt)", "error", err)
				return false
			}
			rec, claims = cur, c
			continue
		}
		if err != nil {
			log.Error("could not record a failed create as deleted; this instance's reconciler takes it back at its next pass (a restart before that leaves it live, as the store holds it: its caller was answered 504 in doubt)", "error", err)
			return false
		}
		tomb.Revision = rev
		break
	}
	_, err := s.pushDisabled(ctx, rec.PublicKey, token)
	if err != nil {
		log.Warn("a failed create may be on some servers; the reconciler disables and deletes it", "error", err)
		return true
	}
	s.finishDelete(ctx, tomb)
	return true
}

// setExpiry sets an account's expiry from a Go duration from now; ""
// leaves none.
func setExpiry(c *jwt.AccountClaims, in string) error {
	if in == "" {
		return nil
	}
	d, err := time.ParseDuration(in)
	if err != nil || d <= 0 {
		return fmt.Errorf("%w: \"expires_in\" must be a positive Go duration such as \"720h\", got %q", ErrInvalid, in)
	}
	if d > maxExpiresIn {
		return errExpiresInTooLong(in)
	}
	c.Expires = expiryAfter(d)
	if c.Expires > maxAccountExpiry {
		return fmt.Errorf("%w: \"expires_in\" %q puts the account's expiry past %s, the last one nats-server's resolver stores (past it, the store drops the account's JWT within a minute); leave it out for an account that does not expire", ErrInvalid, in, time.Unix(maxAccountExpiry, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// maxAccountExpiry is the last account expiry (Unix seconds) a full
// resolver keeps: its store times the removal of an expired JWT in Unix
// nanoseconds, which overflow past 2262-04-11, so it removed an account
// expiring later at its next check (once a minute), and the reconciler
// pushed it again, pass after pass.
const maxAccountExpiry = math.MaxInt64 / int64(time.Second)

// maxExpiresIn bounds "expires_in". nats-server times a JWT's expiry as a
// time.Duration of the whole seconds left (exp less its clock's Unix
// second), which overflows past math.MaxInt64 ns: an account or a user
// given Go's longest duration was expired at once on the servers,
// though the service signed, stored and answered it as valid for 292
// years. Two seconds under the longest duration leave room for the
// rounding up (expiryAfter) and the second the server's clock is in.
const maxExpiresIn = time.Duration(math.MaxInt64) - 2*time.Second

// errExpiresInTooLong refuses an "expires_in" over maxExpiresIn.
func errExpiresInTooLong(in string) error {
	return fmt.Errorf("%w: \"expires_in\" %q is longer than the servers can time (at most %s); leave it out for a JWT that does not expire", ErrInvalid, in, maxExpiresIn)
}

// expiryAfter is the JWT expiry (whole seconds) d from now, rounded up: a
// JWT's exp counts seconds, and cut down, "expires_in":"1500ms" expired
// after half a second, and "1ms" at once.
func expiryAfter(d time.Duration) int64 {
	t := time.Now().Add(d)
	if t.Nanosecond() > 0 {
		return t.Unix() + 1
	}
	return t.Unix()
}

// tombstone returns the record of a deleted account: its keys dropped and
// its disabled version as its JWT.
func tombstone(a Account, disabledJWT string) Account {
	a.IdentitySeed = ""
	a.SigningKeys = nil
	a.JWT = disabledJWT
	a.Phase = PhaseDisabled
	a.DeletedAt = time.Now().Unix()
	return a
}

// GetAccount returns an account with its JWT and decoded claims. The system
// account and the service's own are read from the resolver.
func (s *Service) GetAccount(ctx context.Context, req api.AccountRequest) (*api.AccountReply, error) {
	return s.getAccount(ctx, req, true)
}

// getAccount is GetAccount; again says a name that led to a deleted
// account is resolved once more.
func (s *Service) getAccount(ctx context.Context, req api.AccountRequest, again bool) (*api.AccountReply, error) {
	t, err := s.resolve(ctx, req.Account)
	if err != nil {
		return nil, err
	}
	if t.system {
		token, claims, err := s.remoteAccount(ctx, t.pub)
		if err != nil {
			return nil, err
		}
		return &api.AccountReply{Account: api.Account{Name: claims.Name, PublicKey: t.pub, JWT: token, Claims: claims}}, nil
	}
	// The store's latest version, past a replicated store's cache: the
	// get may reach another instance than the change it follows, and its
	// cache lags that change by milliseconds, or by seconds while its
	// watcher recovers from the loss of a stream leader.
	var a Account
	if l, ok := s.store.(latestReader); ok {
		a, err = l.AccountLatest(ctx, t.pub)
	} else {
		a, err = s.store.Account(ctx, t.pub)
	}
	if err != nil {
		return nil, err
	}
	if !a.Live() {
		// Deleted by another instance since resolve read this one's
		// mirror: answered, the get showed the tombstone's disabled JWT
		// as the account. A name may have gone to an account created
		// since: the read of the tombstone brought the cache past it,
		// and the name is resolved again.
		if again && !nkeys.IsValidPublicAccountKey(strings.TrimSpace(req.Account)) {
			return s.getAccount(ctx, req, false)
		}
		return nil, fmt.Errorf("%w: account %s (%q) was deleted at %s", ErrNotFound, a.PublicKey, a.Name, time.Unix(a.DeletedAt, 0).UTC().Format(time.RFC3339))
	}
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	return &api.AccountReply{Account: api.Account{
		Name: a.Name, PublicKey: a.PublicKey, JWT: a.JWT, Claims: st.claims,
		Roles: roles(a), SelfService: a.Settings.SelfService, SelfServiceQuota: a.Settings.Quota, SelfServiceRole: a.Settings.CallerRole,
	}}, nil
}

// newSigningKey makes an account signing key for a role.
func (s *Service) newSigningKey() (Seed, string, error) {
	kp, err := s.accountKeys.Get()
	if err != nil {
		return "", "", err
	}
	defer kp.Wipe()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	return Seed(append([]byte(nil), seed...)), pub, nil
}

// ListAccounts lists the live accounts this service manages, sorted by
// name, a page at a time.
func (s *Service) ListAccounts(ctx context.Context, req api.ListRequest) (*api.ListAccountsReply, error) {
	stored, err := s.store.Accounts(ctx)
	var unread *UnreadableError
	if errors.As(err, &unread) {
		// A damaged record is every instance's: the list holds the
		// others, and says how many it lacks.
		err = nil
	}
	if err != nil {
		return nil, err
	}
	all := stored[:0]
	for _, a := range stored {
		if a.Live() {
			all = append(all, a)
		}
	}
	// Each entry is measured as the reply encodes it: JSON escapes a
	// name's '<', '>' and '&' to six bytes each, and a page over
	// max_payload is no reply.
	page, next, err := s.page(req, len(all), func(i int) int {
		b, _ := json.Marshal(api.AccountSummary{Name: all[i].Name, PublicKey: all[i].PublicKey}) // two strings: it cannot fail
		return len(b) + 1
	})
	if err != nil {
		return nil, err
	}
	out := make([]api.AccountSummary, 0, page.to-page.from)
	for _, a := range all[page.from:page.to] {
		out = append(out, api.AccountSummary{Name: a.Name, PublicKey: a.PublicKey})
	}
	rep := &api.ListAccountsReply{Accounts: out, Total: len(all), NextOffset: next}
	if unread != nil {
		rep.Unreadable = len(unread.Accounts)
	}
	return rep, nil
}

type span struct{ from, to int }

// page picks the entries of a list reply: from the request's offset, at most
// its limit, and no more than fit in one message by the size estimate.
// next is the offset of the next page, or 0 when this is the last.
func (s *Service) page(req api.ListRequest, n int, size func(i int) int) (span, int, error) {
	if req.Offset < 0 || req.Limit < 0 {
		return span{}, 0, fmt.Errorf("%w: \"offset\" and \"limit\" must not be negative", ErrInvalid)
	}
	from := min(req.Offset, n)
	to := n
	if req.Limit > 0 && req.Limit < n-from {
		to = from + req.Limit
	}
	budget := s.jwtLimit() - 4096 // room for the envelope
	// Every page holds at least one entry, so that following next_offset
	// always ends.
	if from < to {
		budget -= size(from)
	}
	for i := from + 1; i < to; i++ {
		if budget -= size(i); budget < 0 {
			to = i
			break
		}
	}
	next := 0
	if to < n {
		next = to
	}
	return span{from, to}, next, nil
}

// UpdateAccount changes the given fields of an account and pushes it.
func (s *Service) UpdateAccount(ctx context.Context, req api.UpdateAccountRequest) (*api.AccountReply, error) {
	if updatesNothing(req) {
		return nil, fmt.Errorf("%w: account.update of %q gives nothing to change: give at least one field besides \"account\" (limits, description, tags, roles, exports, imports, expires_in, default_permissions, self_service...)", ErrInvalid, req.Account)
	}
	a, err := s.live(ctx, req.Account, "updated")
	if err != nil {
		return nil, err
	}
	// Check the request once before it waits for a version.
	probe := a
	probeClaims, err := claimsCopy(jwt.NewAccountClaims(a.PublicKey))
	if err != nil {
		return nil, err
	}
	if st, err := s.state(a); err == nil {
		probeClaims, _ = claimsCopy(st.claims)
	}
	if err := s.updateAccount(ctx, req, func() (Seed, string, error) { return "", a.PublicKey, nil })(&probe, probeClaims); err != nil {
		return nil, err
	}
	if req.SelfService != nil || req.SelfServiceQuota != nil || req.SelfServiceRole != nil {
		// A self-service create under way on this instance finishes
		// first; one after it checks the new settings. Taken before
		// the signing lock, as a create takes them.
		defer s.locks.lock(selfLock(a.PublicKey))()
	}
	own := ""
	if len(req.Roles) > 0 || req.Tags != nil {
		// A role template change, or one of the account's tags, checks
		// the roles' recorded users (checkRoleUsers,
		// checkAccountTagUsers): users being issued under the old
		// template or tags are recorded first, as for a rotation with
		// revoke_old; later ones are signed under the new ones. On this
		// instance.
		own = a.PublicKey
	}
	if req.Exports != nil {
		// An importer's change holds this lock shared from its check of
		// the exports to its push (activationSigners): taken
		// exclusively, one under way is stored before the imports it
		// cuts are listed (cutImports), and one after checks the new
		// exports. Without it, an import checked against the old
		// exports was stored after the list: the server dropped it,
		// and neither reply named it. On this instance.
		own = a.PublicKey
	}
	var exporters []string
	if req.Imports != nil {
		// Activations are signed with keys their exporters still list
		// once this is done (activationSigners).
		exporters = s.activationSigners(ctx, *req.Imports)
	}
	if own != "" || len(exporters) > 0 {
		defer s.lockSigning(own, exporters)()
	}
	apply := s.updateAccount(ctx, req, s.newSigningKey)
	var before *jwt.AccountClaims
	if req.Exports != nil {
		// The exports the change replaced, for the imports it cuts off
		// (cutImports): those of the version it applied to, the last
		// one tried.
		update := apply
		apply = func(a *Account, c *jwt.AccountClaims) error {
			prev := *c
			if err := update(a, c); err != nil {
				return err
			}
			before = &prev
			return nil
		}
	}
	var recheck func(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error
	if slices.ContainsFunc(slices.Collect(maps.Values(req.Roles)), func(r *api.Role) bool { return r != nil }) || req.Tags != nil {
		// A role removed, with no template set, checks nothing: it
		// cuts its users off.
		recheck = func(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error {
			if err := s.checkRoleUsers(ctx, a, old, c, req.Roles); err != nil {
				return err
			}
			return s.checkAccountTagUsers(ctx, a, old, c)
		}
	}
	if len(exporters) > 0 {
		// On a store shared by instances, an exporter's delete or change
		// of exports another instance stored meanwhile is checked for
		// once this change is stored (importsServed). Imports that name
		// no account (removed: "imports": []) have nothing to check:
		// checked, such a change waited for the store's watcher and
		// failed (503) while it caught up.
		roles := recheck
		recheck = func(ctx context.Context, a *Account, old, c *jwt.AccountClaims) error {
			if roles != nil {
				if err := roles(ctx, a, old, c); err != nil {
					return err
				}
			}
			return s.importsServed(ctx, a, c)
		}
	}
	out, err := s.submitChecked(a.PublicKey, apply, recheck)
	if err != nil {
		return nil, err
	}
	if out.unchanged {
		// No new version, nothing to audit; the current one was pushed
		// again ("resolver").
		s.log.Debug("account update asks for what the account has; no new version, the current one pushed again", "account", a.PublicKey, "name", a.Name)
		rep := &api.AccountReply{Account: api.Account{Name: out.account.Name, PublicKey: a.PublicKey, JWT: out.account.JWT}}
		rep.Resolver, rep.ResolverOmitted = wireResult(out.result)
		return rep, nil
	}
	s.log.Info("account updated", "account", a.PublicKey, "name", a.Name)
	s.emit(ctx, api.Event{Type: api.EventAccountUpdated, Account: a.PublicKey, AccountName: a.Name})
	rep := &api.AccountReply{Account: api.Account{Name: out.account.Name, PublicKey: a.PublicKey, JWT: out.account.JWT}}
	rep.Resolver, rep.ResolverOmitted = wireResult(out.result)
	if before != nil {
		if after, err := s.claimsOf(out.account); err == nil {
			rep.CutImports, rep.CutImportsOmitted, rep.CutImportsIncomplete = s.cutImports(ctx, a.PublicKey, out.account.Revision, before, after, serversRoomLeft(rep.Resolver))
		}
	}
	return rep, nil
}

// updatesNothing tells whether an update request gives no field to change
// (or only empty roles): every field of it but the account is nil or empty.
func updatesNothing(req api.UpdateAccountRequest) bool {
	v := reflect.ValueOf(req)
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "Account" {
			continue
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Map, reflect.Slice:
			if f.Len() > 0 {
				return false
			}
		default:
			if !f.IsZero() {
				return false
			}
		}
	}
	return true
}

// updateAccount returns the change an update request makes; newKey makes
// the signing keys of new roles.
func (s *Service) updateAccount(ctx context.Context, req api.UpdateAccountRequest, newKey func() (Seed, string, error)) applyFunc {
	// Imports look up their exporters; that must not end with the request.
	ctx = context.WithoutCancel(ctx)
	return func(a *Account, c *jwt.AccountClaims) error {
		var tags jwt.TagList
		if req.Tags != nil {
			if err := setTags(&tags, *req.Tags); err != nil {
				return err
			}
		}
		// Everything is done to copies and checked as a whole (the JWT's
		// own validation included) before the account changes: a refused
		// change leaves the account as it was, and fails alone, not the
		// other changes of the version it would have joined.
		set := a.Settings
		if req.SelfService != nil {
			set.SelfService = *req.SelfService
		}
		if req.SelfServiceQuota != nil {
			set.Quota = *req.SelfServiceQuota
		}
		if req.SelfServiceRole != nil {
			set.CallerRole = *req.SelfServiceRole
		}
		trial, trialClaims := *a, (*jwt.AccountClaims)(nil)
		var err error
		if trialClaims, err = claimsCopy(c); err != nil {
			return err
		}
		if err := setRoles(&trial, trialClaims, req.Roles, newKey); err != nil {
			return err
		}
		if req.Exports != nil {
			if err := checkExports(*req.Exports); err != nil {
				return err
			}
			trialClaims.Exports = slices.Clone(*req.Exports) // as CreateAccount
		}
		if req.Imports != nil {
			if err := s.setImports(ctx, &trial, trialClaims, *req.Imports); err != nil {
				return err
			}
		}
		if err := s.setSelfService(&trial, trialClaims, set); err != nil {
			return err
		}
		if req.ExpiresIn != nil {
			trialClaims.Expires = 0
			if err := setExpiry(trialClaims, *req.ExpiresIn); err != nil {
				return err
			}
		}
		if err := mergeAccountFields(trialClaims, req.Limits, req.DefaultPermissions); err != nil {
			return err
		}
		if req.Tags != nil {
			trialClaims.Tags = tags
		}
		// With the account's new tags: the server puts them into the
		// templates of every role ({{account-tag(x)}}) for every user.
		if err := s.checkRoleUsers(ctx, &trial, c, trialClaims, req.Roles); err != nil {
			return err
		}
		if err := s.checkAccountTagUsers(ctx, &trial, c, trialClaims); err != nil {
			return err
		}
		if req.Description != nil {
			if err := checkDescription("description", *req.Description); err != nil {
				return err
			}
			trialClaims.Description = *req.Description
		}
		if err := checkBearer(trialClaims); err != nil {
			return err
		}
		if err := checkAccountTags(trialClaims); err != nil {
			return err
		}
		vr := jwt.CreateValidationResults()
		trialClaims.Validate(vr)
		if errs := vr.Errors(); len(errs) > 0 {
			return fmt.Errorf("%w: the account JWT would be invalid: %w", ErrInvalid, errors.Join(errs...))
		}
		*a = trial
		*c = *trialClaims
		return nil
	}
}

// DeleteAccount deletes an account in two phases. First its disabled
// version (no connections, every user revoked, a newer iat) replaces it:
// in the store, where the account becomes a tombstone and its keys are
// dropped, and on every server, where it is the tombstone resolver sync
// spreads. Once every known server has confirmed that, the DELETE is sent.
// A server that was down gets both from the reconciler when it is back.
// When the disabled version cannot be pushed at all, the account is put
// back as it was.
func (s *Service) DeleteAccount(ctx context.Context, req api.AccountRequest) (*api.DeleteAccountReply, error) {
	a, err := s.live(ctx, req.Account, "deleted")
	if err != nil {
		return nil, err
	}
	// As an update of exports does: an importer's change that checked
	// this account's exports is stored before the imports the delete
	// cuts are listed, and one after finds the account deleted.
	defer s.signing.lock(a.PublicKey)()
	var before *jwt.AccountClaims
	out, err := s.submit(a.PublicKey, func(next *Account, c *jwt.AccountClaims) error {
		prev := *c // what the imports it cuts off were served by
		before = &prev
		*next = tombstone(*next, "")
		s.disable(c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delete account %s: %w", a.PublicKey, err)
	}
	s.log.Info("account deleted", "account", a.PublicKey, "name", a.Name, "phase", out.phase)
	s.emit(ctx, api.Event{Type: api.EventAccountDeleted, Account: a.PublicKey, AccountName: a.Name})
	rep := &api.DeleteAccountReply{Deleted: a.PublicKey, Phase: string(out.phase), Waiting: out.waiting}
	rep.Resolver, rep.ResolverOmitted = wireResult(out.result)
	rep.CutImports, rep.CutImportsOmitted, rep.CutImportsIncomplete = s.cutImports(ctx, a.PublicKey, out.account.Revision, before, nil, serversRoomLeft(rep.Resolver))
	return rep, nil
}

// maxNameLen is the most characters (not bytes: a name in Japanese is as
// long as one in English) of an account or user name, once trimmed.
const maxNameLen = 128

// checkName validates an account or user name: not empty, at most 128
// characters, no control characters, no invisible ones (below), and not an
// nkey (a name that parses as a key would make "name or public key"
// ambiguous).
func checkName(field, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", fmt.Errorf("%w: %q is required and must not be empty", ErrInvalid, field)
	case utf8.RuneCountInString(name) > maxNameLen:
		return "", fmt.Errorf("%w: %q is %d characters long; at most %d", ErrInvalid, field, utf8.RuneCountInString(name), maxNameLen)
	}
	if err := checkText(field, name); err != nil {
		return "", err
	}
	switch {
	case looksLikeSeed(name):
		return "", fmt.Errorf("%w: %q: %w", ErrInvalid, field, errSeedGiven)
	case nkeys.IsValidPublicKey(name):
		return "", fmt.Errorf("%w: %q must be a name, not a public key", ErrInvalid, field)
	}
	return name, nil
}

// checkText refuses one line of text the service puts into a JWT as it
// is (a name; an export's or import's name, an export's info_url): a
// control character, U+FFFD (notUTF8), or an invisible character (see
// invisible).
func checkText(field, text string) error {
	switch {
	case strings.ContainsFunc(text, unicode.IsControl):
		return fmt.Errorf("%w: %q must not contain control characters", ErrInvalid, field)
	case strings.ContainsRune(text, utf8.RuneError):
		return notUTF8(field)
	case strings.ContainsFunc(text, invisible):
		r := []rune(text)[slices.IndexFunc([]rune(text), invisible)]
		return fmt.Errorf("%w: %q must not contain invisible characters or white space other than a space (it holds %U)", ErrInvalid, field, r)
	}
	return nil
}

// notUTF8 is the refusal of text holding U+FFFD: what the decoder makes of
// an escaped lone surrogate ("\ud800") or of bytes that are not UTF-8, so
// not what the caller sent.
func notUTF8(field string) error {
	return fmt.Errorf("%w: %q is not valid UTF-8 (it holds U+FFFD, which a lone surrogate such as \\ud800 decodes as)", ErrInvalid, field)
}

// checkDescription refuses a description (field names it: an account's, an
// export's) with a control character other than a line break or a tab (a
// NUL, a terminal escape that every tool printing the JWT's claims would
// play), an invisible one (see invisible; the white space it counts is
// taken here), or U+FFFD (notUTF8).
func checkDescription(field, d string) error {
	if i := strings.IndexFunc(d, func(r rune) bool {
		return (unicode.IsControl(r) && r != '\n' && r != '\t') || unicode.Is(unicode.Cf, r)
	}); i >= 0 {
		r, _ := utf8.DecodeRuneInString(d[i:])
		return fmt.Errorf("%w: %q must not contain control characters other than line breaks and tabs, nor invisible ones (it holds %U)", ErrInvalid, field, r)
	}
	if strings.ContainsRune(d, utf8.RuneError) {
		return notUTF8(field)
	}
	return nil
}

// invisible reports a character a name may not hold although it is not a
// control character: a Unicode format character (zero-width space U+200B,
// byte-order mark U+FEFF, soft hyphen, the bidirectional overrides such as
// U+202E) shows as nothing or reorders the text around it, and white space
// other than U+0020 (a no-break space, a line separator) looks like a space
// or breaks the line. Either would let two names that cannot be told apart
// on screen, "acme" and "acme\u200b", name two accounts in every list and
// log.
func invisible(r rune) bool {
	return unicode.Is(unicode.Cf, r) || (r != ' ' && unicode.IsSpace(r))
}

// connectionTypes are the values of allowed_connection_types that
// nats-server knows, in its order. The server reads them in any case.
var connectionTypes = []string{
	jwt.ConnectionTypeStandard, jwt.ConnectionTypeWebsocket, jwt.ConnectionTypeLeafnode,
	jwt.ConnectionTypeLeafnodeWS, jwt.ConnectionTypeMqtt, jwt.ConnectionTypeMqttWS,
	jwt.ConnectionTypeInProcess,
}

// setConnectionTypes adds types to list, upper-cased as the server reads
// them. It returns ErrInvalid for a type the server does not know: the
// server ignores it, and a user whose every type is unknown can never
// connect.
func setConnectionTypes(list *jwt.StringList, types []string) error {
	for _, t := range types {
		up := strings.ToUpper(t)
		if !slices.Contains(connectionTypes, up) {
			return fmt.Errorf("%w: \"allowed_connection_types\": unknown connection type %q (known: %s)", ErrInvalid, t, strings.Join(connectionTypes, ", "))
		}
		list.Add(up)
	}
	return nil
}

// setTags adds tags, refusing empty ones and those with control or
// invisible characters or U+FFFD (notUTF8).
func setTags(list *jwt.TagList, tags []string) error {
	for _, t := range tags {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("%w: \"tags\" must not contain empty tags", ErrInvalid)
		}
		// A tag goes into the JWT as it is, shown by every tool that
		// prints the claims, and into subjects through {{tag()}}.
		if i := strings.IndexFunc(strings.TrimSpace(t), func(r rune) bool { return unicode.IsControl(r) || invisible(r) }); i >= 0 {
			r, _ := utf8.DecodeRuneInString(strings.TrimSpace(t)[i:])
			return fmt.Errorf("%w: \"tags\": tag %q must not contain control or invisible characters (it holds %U)", ErrInvalid, t, r)
		}
		if strings.ContainsRune(t, utf8.RuneError) {
			return notUTF8("tags")
		}
		list.Add(t)
	}
	return nil
}

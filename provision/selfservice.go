package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// Tenant is the caller of a self-service request. Account is the account
// the server bound into the subject through the service's export (the
// importing account's key at its account_token_position): no request can
// name another. The rest is what the server put in the request's
// Nats-Request-Info header, which it sets on every request that crosses
// the import.
type Tenant struct {
	Account   string
	User      string
	Name      string
	IssuerKey string
}

func (t Tenant) caller() api.Caller {
	return api.Caller{Kind: "tenant", Account: t.Account, User: t.User, Name: t.Name}
}

// selfLock names the lock a self-service create holds from its count to
// its record, and an account.update of the account's self-service settings
// takes: the update replies only once the creates it could not stop have
// issued, and the ones after it read its settings.
func selfLock(pub string) string { return "self:" + pub }

// selfImportName names the import the service adds to tenant accounts.
const selfImportName = api.SelfServiceName

// selfImport is the import that lets an account's users reach the
// self-service subjects: what they send to <prefix>.self.user.X arrives in
// the service's account as <prefix>.self.<account>.user.X, with the
// caller's user, name and signing key shared.
func (s *Service) selfImport(pub string) *jwt.Import {
	p := s.cfg.SubjectPrefix
	return &jwt.Import{
		Name:         selfImportName,
		Subject:      jwt.Subject(p + ".self." + pub + ".user.*"),
		LocalSubject: jwt.RenamingSubject(p + ".self.user.*"),
		Account:      s.cfg.ServiceAccount,
		Type:         jwt.Service,
		Share:        true,
	}
}

// setSelfService applies self-service settings to an account: the import
// is there exactly when self-service is on. It checks everything before it
// changes anything.
func (s *Service) setSelfService(a *Account, c *jwt.AccountClaims, set AccountSettings) error {
	switch {
	case set.Quota < 0:
		return fmt.Errorf("%w: \"self_service_quota\" must be 0 (no cap) or more", ErrInvalid)
	case set.SelfService && s.cfg.ServiceAccount == "":
		return fmt.Errorf("%w: \"self_service\" needs the provisioner's own account: configure service_creds", ErrInvalid)
	case set.CallerRole != "" && roleKey(a, set.CallerRole) == "":
		return fmt.Errorf("%w: \"self_service_role\": the account has no role %q (its roles: %s)", ErrInvalid, set.CallerRole, listOr(roles(*a), "none"))
	}
	kept := c.Imports[:0]
	for _, im := range c.Imports {
		if im.Name != selfImportName {
			kept = append(kept, im)
		}
	}
	c.Imports = kept
	if set.SelfService {
		c.Imports.Add(s.selfImport(a.PublicKey))
	}
	a.Settings = set
	return nil
}

// selfAccount returns the tenant's account when it may self-serve: live,
// with self-service on, and the caller in the role that may, if one is
// set. A caller outside that role is refused with ErrForbidden and, when
// refusal is not nil, the refusal is published as that event (a change the
// caller was not allowed to make is worth an audit record, as a quota's
// refusal is); a list has no event type and passes nil.
func (s *Service) selfAccount(ctx context.Context, t Tenant, refusal *api.Event) (Account, error) {
	if s.protected(t.Account) {
		return Account{}, fmt.Errorf("%w: account %s has no self-service", ErrForbidden, t.Account)
	}
	a, err := s.store.Account(ctx, t.Account)
	if errors.Is(err, ErrNotFound) || (err == nil && !a.Live()) {
		return Account{}, fmt.Errorf("%w: account %s is not managed by this service", ErrNotFound, t.Account)
	}
	if err != nil {
		return Account{}, err
	}
	if err := s.selfAllowed(ctx, t, a, refusal); err != nil {
		return Account{}, err
	}
	return a, nil
}

// selfAllowed checks the account's self-service settings for the tenant:
// self-service on, and the caller in self_service_role if one is set. A
// refusal for the role is published as selfAccount says.
func (s *Service) selfAllowed(ctx context.Context, t Tenant, a Account, refusal *api.Event) error {
	if !a.Settings.SelfService {
		return fmt.Errorf("%w: self-service is off for account %q", ErrForbidden, a.Name)
	}
	if r := a.Settings.CallerRole; r != "" {
		if t.IssuerKey == "" || !slices.Contains(roleKeys(&a, r), t.IssuerKey) {
			if refusal != nil {
				e := *refusal
				e.Account, e.AccountName, e.Caller = a.PublicKey, a.Name, t.caller()
				e.Result = fmt.Sprintf("refused: caller outside self-service role %q", r)
				s.emit(ctx, e)
			}
			return fmt.Errorf("%w: only users of role %q may self-serve in account %q", ErrForbidden, r, a.Name)
		}
	}
	return nil
}

// SelfCreateUser issues a user of the tenant's own account in one of its
// roles (prov.self.user.create). The role is required and nothing in the
// request can widen it: the role's scoped key signs the user, and the
// server applies the role's template. The account's quota caps the active
// self-service users.
func (s *Service) SelfCreateUser(ctx context.Context, t Tenant, req api.SelfCreateUserRequest) (*api.CreateUserReply, error) {
	if strings.TrimSpace(req.Role) == "" {
		return nil, fmt.Errorf("%w: \"role\" is required: a self-service user is issued in one of the account's roles", ErrInvalid)
	}
	u, err := newUserRequest(api.CreateUserRequest{Name: req.Name, Role: req.Role, PublicKey: req.PublicKey, ExpiresIn: req.ExpiresIn, XKey: req.XKey})
	if err != nil {
		return nil, err
	}
	u.self = true
	a, err := s.selfAccount(ctx, t, &api.Event{Type: api.EventUserCreated, UserName: u.claims.Name, Role: u.role})
	if err != nil {
		return nil, err
	}
	if u.pub == "" && u.xkey == "" {
		// The reply goes to an inbox in the tenant's account, which other
		// users of that account may be allowed to subscribe to: a seed in
		// the clear there is readable by them. The request's values as
		// newUserRequest read them, trimmed: a key of white space only is
		// no key, and the service would make one and send its seed.
		return nil, fmt.Errorf("%w: \"public_key\" or \"xkey\" is required: a tenant makes its user key itself, or sends a curve key to seal the seed to; a seed in the clear would travel on an inbox other users of the account may read", ErrInvalid)
	}
	// The count and the issue are one step for this instance, and an
	// account.update of the self-service settings waits for it (selfLock).
	defer s.locks.lock(selfLock(a.PublicKey))()
	// The account is read again under the lock: the version read before
	// it may be older than a user the request ahead issued with a key
	// made since (an account.rotate), whom it would show cut off, and the
	// count would miss; and older than an account.update that replied
	// while this request waited, which turned self-service off, set a
	// self_service_role or lowered the quota: the settings are checked
	// again on it. It is the store's latest, past a mirror that may not
	// hold yet an update another instance stored.
	if a, err = s.account(ctx, a.PublicKey, true); err != nil {
		return nil, err
	}
	if !a.Live() {
		return nil, fmt.Errorf("%w: account %s is not managed by this service", ErrNotFound, a.PublicKey)
	}
	if err := s.selfAllowed(ctx, t, a, &api.Event{Type: api.EventUserCreated, UserName: u.claims.Name, Role: u.role}); err != nil {
		return nil, err
	}
	if q := a.Settings.Quota; q > 0 {
		n, err := s.activeSelfUsers(ctx, a, "")
		if err != nil {
			return nil, err
		}
		if n >= q {
			err := fmt.Errorf("%w: account %q has %d active self-service users, its quota; revoke one first", ErrForbidden, a.Name, n)
			s.emit(ctx, api.Event{Type: api.EventUserCreated, Account: a.PublicKey, AccountName: a.Name, UserName: u.claims.Name, Role: u.role, Caller: t.caller(), Result: "refused: quota reached"})
			return nil, err
		}
	}
	// The settings are read once more from the bucket's latest version
	// once the user's record is stored, before its JWT is handed out: a
	// create on this instance that read them just before another
	// instance's account.update was stored, and wrote its record only
	// after that update replied (paused in between), issued under the
	// settings the update replaced. Refused then, its user is revoked
	// (its record holds its name and would take quota). A record stored
	// before the update is as a user issued before it. A bucket that
	// cannot be read now (for as long as a write's outcome is waited for)
	// leaves the checks made before the record: refused, the user was
	// revoked in a version the bucket would refuse as well, and its
	// record kept its name and quota.
	var withdrawn bool
	u.recorded = func(ctx context.Context, rec User) error {
		now, ok, err := s.latestOnceRecorded(ctx, a, rec, "the self-service settings")
		if errors.Is(err, ErrNotFound) {
			// Deleted meanwhile: its users' records go with it.
			return fmt.Errorf("%w: account %s is not managed by this service", ErrNotFound, a.PublicKey)
		}
		if !ok {
			withdrawn = err != nil
			return err
		}
		refused := s.selfAllowed(ctx, t, now, nil)
		if refused == nil {
			// The role's template as it is now: another instance's
			// change of it checked the role's active users in its
			// mirror, which did not hold this record yet.
			refused = s.selfRoleFits(now, rec)
		}
		if q := now.Settings.Quota; refused == nil && q > 0 && q != a.Settings.Quota {
			// The others: the mirror may or may not hold this record yet.
			n, err := s.activeSelfUsers(ctx, now, rec.PublicKey)
			if err != nil {
				s.log.Warn("the self-service users could not be counted again once a user's record was stored; the count made before it stands", "account", a.PublicKey, "user", rec.PublicKey, "error", err)
				return nil
			}
			if n >= q {
				refused = fmt.Errorf("%w: account %q has %d active self-service users, its quota; revoke one first", ErrForbidden, now.Name, n)
			}
		}
		withdrawn = refused != nil
		return refused
	}
	out, rec, err := s.issue(ctx, a, u, t.caller())
	if err != nil && withdrawn {
		return nil, s.withdrawRefused(ctx, a, rec, t.caller(), err, refusedWhy(err, "self-service settings changed"))
	}
	return out, err
}

// refusedWhy says what changed meanwhile for a user refused (err) once
// its record was stored, for withdrawRefused: changed, or what err names
// instead.
func refusedWhy(err error, changed string) string {
	switch {
	case errors.Is(err, ErrStale):
		return "its signing key removed" // signerRemoved
	case errors.Is(err, ErrOtherSealKey):
		return "the account stored by an instance with another seal_key"
	}
	return changed
}

// latestOnceRecorded reads a's latest version once a user's record is
// stored, for the checks made on it again. Deleted meanwhile, it is
// ErrNotFound; ok is false, with no error, when it could not be read: the
// checks made before the record stand (logged, naming what of stands).
// A version sealed with a seal key this instance does not hold is
// ErrOtherSealKey: the user is refused, and to be withdrawn.
func (s *Service) latestOnceRecorded(ctx context.Context, a Account, rec User, what string) (now Account, ok bool, err error) {
	err = readBack(ctx, func(ctx context.Context) (err error) {
		now, err = s.account(ctx, a.PublicKey, true)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound) || (err == nil && !now.Live()):
		return Account{}, false, ErrNotFound
	case errors.Is(err, ErrOtherSealKey):
		// The bucket answered: it holds a version another instance,
		// given another seal_key, stored since the account was read
		// (a seal_key rotation done in one step). Its changes are
		// what the checks are made again for, and none can be made
		// on it here: the checks made before the record standing,
		// the user was handed out though that version may have
		// turned self-service off or changed the role's template,
		// while every other request for the account is answered 503.
		return Account{}, false, err
	case err != nil:
		s.log.Warn(what+" could not be read again once a user's record was stored; the checks made before it stand", "account", a.PublicKey, "user", rec.PublicKey, "error", err)
		return Account{}, false, nil
	}
	return now, true, nil
}

// withdrawRefused revokes a user refused (err) once its record was stored,
// its JWT never handed out, and returns the create's answer: err, saying
// so when the revocation failed and is retried in the background. why is
// what changed meanwhile, for the event and the log.
func (s *Service) withdrawRefused(ctx context.Context, a Account, rec User, caller api.Caller, err error, why string) error {
	refused := api.Event{Type: api.EventUserCreated, Account: a.PublicKey, AccountName: a.Name, User: rec.PublicKey, UserName: rec.Name, Role: rec.Role, Caller: caller, Result: "refused: " + why + " meanwhile"}
	if werr := s.withdrawUser(a, rec); werr != nil {
		msg := "a user refused after its record was stored could not be revoked; it stays listed as active (its JWT was never handed out) until a retry revokes it"
		if errors.Is(werr, ErrOtherSealKey) {
			// The retries fail as well until this instance holds the
			// account's seal key, and the restart that gives it the
			// key ends them.
			msg = "a user refused after its record was stored cannot be revoked here: the account is sealed with a seal key this instance does not hold; it stays listed as active (its JWT was never handed out): revoke it on an instance that holds the key"
		}
		s.log.Error(msg, "account", a.PublicKey, "user", rec.PublicKey, "name", rec.Name, "caller", caller.Kind, "error", werr)
		s.retryWithdraw(a, rec, refused)
		// The answer is the refusal (403 or 400, as when the revocation
		// lands): the revocation's own failure is the service's to
		// retry, not the caller's, and a 502/503/504 would tell the
		// caller to retry a create that is refused. Nor its text: a
		// 403's description goes to a tenant as it is, and what the
		// servers or the store said is for the log (above).
		return fmt.Errorf("%w (%s meanwhile; user %s, recorded but never handed out, could not be revoked yet and is tried again in the background)", err, why, rec.PublicKey)
	}
	s.log.Warn("a user was refused after its record was stored: "+why+" meanwhile; it is revoked (its JWT was never handed out)", "account", a.PublicKey, "user", rec.PublicKey, "name", rec.Name, "caller", caller.Kind)
	s.emit(ctx, refused)
	return err
}

// selfRoleFits checks a self-service user, once its record is stored,
// against its role's template on the account's latest version now, as
// issue checked it on the version it read: a change of the template on
// another instance, stored after that read and checked against the
// role's active users in that instance's mirror, which did not hold this
// record yet, would apply to the user unchecked (a user named "*" given
// "telemetry.*.>" by a new "telemetry.{{name()}}.>", or bearer_token to a
// JWT that travelled on the tenant's inbox). A signer the account no
// longer holds (signerRemoved) refuses the user as well.
func (s *Service) selfRoleFits(now Account, rec User) error {
	st, err := s.state(now)
	if err != nil {
		return err
	}
	if err := signerRemoved(st.claims, rec); err != nil {
		return err
	}
	if err := checkTemplateName(st.claims, rec.Signer, rec.Role, rec.Name); err != nil {
		return fmt.Errorf("%w (the role changed meanwhile)", err)
	}
	if err := checkTemplateTags(st.claims, rec.Signer, rec.Role, rec.Tags); err != nil {
		return errSelfTags(rec.Role, "; the role changed meanwhile")
	}
	if sc, ok := st.claims.SigningKeys[rec.Signer].(*jwt.UserScope); ok && sc.Template.BearerToken {
		return fmt.Errorf("%w: role %q gives bearer tokens now (it changed meanwhile), which connect without their seed; self-service replies travel on the tenant's inbox, where other users of the account may read them: an admin issues users of this role", ErrForbidden, rec.Role)
	}
	return nil
}

// errSelfTags refuses a self-service user its role's template refuses for
// its tags (checkTemplateTags): a tenant's request has no "tags", so what
// that error asks of them is an admin's to give. more is said in the
// parentheses.
func errSelfTags(role, more string) error {
	return fmt.Errorf("%w: role %q needs tags on its users that self-service cannot give (self-service issues users without tags%s): an admin issues users of this role", ErrInvalid, role, more)
}

// signerRemoved refuses a user, once its record is stored, whose signing
// key claims, the account's latest version, no longer holds: an
// account.rotate with revoke_old on another instance removed it after
// issue read the account (the rotation waits only for the creates on its
// own instance). Its creds would never connect; answered with them, the
// caller learnt nothing until its connects failed. Refused, the create is
// asked again, and signed with the keys the account holds now. The user
// is withdrawn (revoked) all the same: a rotation whose push failed and
// that is put back brings the key back, and with it a user whose creds
// nobody got, holding its name (and a self-service quota's place).
func signerRemoved(claims *jwt.AccountClaims, rec User) error {
	if rec.Signer == "" || rec.Signer == claims.Subject || claims.SigningKeys.Contains(rec.Signer) {
		return nil
	}
	return fmt.Errorf("%w: account %q's signing keys were rotated meanwhile (revoke_old removed key %s, which signed user %s, so its creds would not connect): ask again, and it is signed with the account's keys now (with a new \"public_key\" if you sent one: a key is issued once)", ErrStale, claims.Name, rec.Signer, rec.PublicKey)
}

// roleFits checks a user, once its record is stored, against its role's
// template in claims, the account's latest version: its name and tags as
// issue checked them on the version it read, and its signer
// (signerRemoved).
func roleFits(claims *jwt.AccountClaims, rec User) error {
	if err := signerRemoved(claims, rec); err != nil {
		return err
	}
	if err := checkTemplateName(claims, rec.Signer, rec.Role, rec.Name); err != nil {
		return fmt.Errorf("%w (the role changed meanwhile)", err)
	}
	if err := checkTemplateTags(claims, rec.Signer, rec.Role, rec.Tags); err != nil {
		return fmt.Errorf("%w (the role changed meanwhile)", err)
	}
	return nil
}

// withdrawUser revokes a user whose record was stored but whose JWT was
// never handed out (the self-service settings or its role changed
// meanwhile), so that it neither holds its name nor takes quota. Once the
// revocation is stored it stands, its push failed or not (keep): the
// reconciler pushes it, whichever instance runs then. Only a store write
// that failed leaves it to retryWithdraw.
func (s *Service) withdrawUser(a Account, rec User) error {
	_, err := s.enqueue(a.PublicKey, &change{apply: func(next *Account, c *jwt.AccountClaims) error {
		c.RevokeAt(rec.PublicKey, time.Unix(max(time.Now().Unix(), rec.IssuedAt), 0))
		return nil
	}, repeatable: true, keep: true, done: make(chan struct{})})
	return err
}

// withdrawRetry bounds the wait between two tries of a withdrawal.
const withdrawRetry = 30 * time.Second

// retryWithdraw tries withdrawUser again in the background, after a
// second and then twice as long each time up to withdrawRetry, until it
// lands, the account is gone (its users' records go with it), or the
// service closes; landed, it publishes the create's refusal (event), as
// the create does when its first try lands. A try fails only when the
// revocation could not be stored (a push that fails leaves it to the
// reconciler: withdrawUser). Nothing else would revoke the user: its
// record looks like any active user's, and the reconciler pushes what the
// store holds. It is this instance's alone: a crash or a stop before it
// lands leaves the user active (listed, counted by the quota, its name
// taken), for an admin to revoke, as the ERROR logged at the first
// failure asks.
func (s *Service) retryWithdraw(a Account, rec User, event api.Event) {
	// Under retryMu, so that no Add meets close's Wait at a zero count.
	s.retryMu.Lock()
	if s.closing.Err() != nil {
		s.retryMu.Unlock()
		return
	}
	s.retries.Add(1)
	s.retryMu.Unlock()
	go func() {
		defer s.retries.Done()
		wait := time.Second
		for tries := 1; ; tries++ {
			t := time.NewTimer(wait)
			select {
			case <-s.closing.Done():
				t.Stop()
				s.log.Error("stopping: a user refused after its record was stored was never revoked; it stays listed as active (its JWT was never handed out): revoke it", "account", a.PublicKey, "user", rec.PublicKey, "name", rec.Name, "tries", tries)
				return
			case <-t.C:
			}
			err := s.withdrawUser(a, rec)
			switch {
			case err == nil:
				s.log.Warn("a user refused after its record was stored is revoked at last (its JWT was never handed out)", "account", a.PublicKey, "user", rec.PublicKey, "name", rec.Name, "tries", tries+1)
				s.emit(s.closing, event)
				return
			case errors.Is(err, ErrNotFound):
				// The account was deleted: the record went with it.
				return
			}
			s.log.Debug("a user refused after its record was stored could not be revoked yet; tried again", "account", a.PublicKey, "user", rec.PublicKey, "error", err)
			wait = min(2*wait, withdrawRetry)
		}
	}()
}

// activeSelfUsers counts an account's self-service users that are neither
// revoked nor expired, but for the key except.
func (s *Service) activeSelfUsers(ctx context.Context, a Account, except string) (int, error) {
	st, err := s.state(a)
	if err != nil {
		return 0, err
	}
	users, err := s.store.Users(ctx, a.PublicKey)
	if err != nil {
		return 0, err
	}
	now := time.Now().Unix()
	n := 0
	for _, u := range users {
		if u.SelfService && u.PublicKey != except && (u.ExpiresAt == 0 || u.ExpiresAt > now) && !revokedBy(st.claims, u) {
			n++
		}
	}
	return n, nil
}

// SelfListUsers lists the users of the tenant's own account
// (prov.self.user.list).
func (s *Service) SelfListUsers(ctx context.Context, t Tenant, req api.SelfListUsersRequest) (*api.ListUsersReply, error) {
	a, err := s.selfAccount(ctx, t, nil)
	if err != nil {
		return nil, err
	}
	return s.listUsers(ctx, a, req.ListRequest)
}

// SelfRevokeUser revokes a user the tenant issued itself
// (prov.self.user.revoke).
func (s *Service) SelfRevokeUser(ctx context.Context, t Tenant, req api.SelfRevokeUserRequest) (*api.RevokeUserReply, error) {
	ref, err := userRef(req.User)
	if err != nil {
		return nil, err
	}
	refusal := &api.Event{Type: api.EventUserRevoked, UserName: ref}
	if nkeys.IsValidPublicUserKey(ref) {
		refusal = &api.Event{Type: api.EventUserRevoked, User: ref}
	}
	a, err := s.selfAccount(ctx, t, refusal)
	if err != nil {
		return nil, err
	}
	// Checked again on the version the revocation joins; a refusal
	// there is not published (the apply may run more than once).
	allowed := func(next Account) error { return s.selfAllowed(ctx, t, next, nil) }
	rep, err := s.revoke(ctx, a, ref, true, allowed, t.caller())
	if errors.Is(err, errJWTFull) {
		// Revocations, tags and permissions are the admin's to remove,
		// max_payload the operator's to raise: nothing a tenant can do.
		return nil, fmt.Errorf("%w: account %q's JWT has no room for another revocation (the servers' max_payload, less room); an admin must make room in it (fewer revocations, tags or permissions) or raise max_payload", ErrInvalid, a.Name)
	}
	return rep, err
}

// EnsureSelfExport makes sure the service's own account exports the
// self-service subjects that tenants' imports name: `provisioner init`
// writes the export, and a deployment made before it, or with another
// prefix, gets it here. The account's JWT is read from the servers,
// changed only by the export, signed anew and pushed.
func (s *Service) EnsureSelfExport(ctx context.Context) error {
	pub := s.cfg.ServiceAccount
	if pub == "" {
		return nil
	}
	defer s.locks.lock("account:" + pub)()
	// The newest copy: the first server to answer may hold an older one
	// (it was down through a push), and the next version built on it
	// would undo the newer on every server.
	token, claims, behind, err := s.newestCopy(ctx, pub)
	if err == nil && token == "" {
		err = fmt.Errorf("%w: the servers hold no JWT for account %s", ErrNotFound, pub)
	}
	if err != nil {
		return fmt.Errorf("the provisioner's own account (service_creds): %w; preload it (provisioner init does)", err)
	}
	want := api.SelfExport(s.cfg.SubjectPrefix)
	for _, e := range claims.Exports {
		if e.Subject == want.Subject && e.Type == jwt.Service && e.AccountTokenPosition == want.AccountTokenPosition {
			if behind {
				// No reconciler pushes this account: a server that
				// holds an older copy (or none) would lack the export
				// for good.
				if _, err := s.resolver.Update(ctx, token); err != nil {
					return fmt.Errorf("push the provisioner's own account to the servers holding an older copy: %w", err)
				}
			}
			return nil
		}
	}
	// A server down may hold a newer copy than those that answered (one
	// pushed while the others were away, or that they lost): a version
	// built on an older one carries a later iat, and when the server
	// comes back its resolver sync keeps that version on every server,
	// the newer one's change undone. Nothing is pushed then.
	if down := s.downServers(); len(down) > 0 {
		return fmt.Errorf("%w: the provisioner's own account lacks the self-service export, and server(s) %s, down, may hold a newer copy of it than the servers that answered: a version built on theirs would undo it when they come back; start again once they are back", ErrUnavailable, strings.Join(down, ", "))
	}
	// An export of the same subject is the service's own in an older
	// form (a deployment's before the account token was bound into it):
	// it is replaced, as the two together make a JWT the servers refuse
	// ("already exports"), and the service refused to start for good. An
	// operator's export that overlaps the subjects otherwise (prov.>) is
	// not the service's to remove: the start is refused, naming it.
	kept := claims.Exports[:0]
	for _, e := range claims.Exports {
		switch {
		case e.Type != jwt.Service:
		case e.Subject == want.Subject:
			continue
		case want.Subject.IsContainedIn(e.Subject) || e.Subject.IsContainedIn(want.Subject):
			return fmt.Errorf("%w: the provisioner's own account exports %q (export %q), which overlaps the self-service subjects %q: an account may not export a service subject twice, and the self-service export binds the tenant's account into its subject; remove or narrow that export (nsc edit account), push it, and start again", ErrInvalid, e.Subject, e.Name, want.Subject)
		}
		kept = append(kept, e)
	}
	claims.Exports = append(kept, want)
	signed, err := s.signNext(ctx, claims)
	if err != nil {
		return fmt.Errorf("sign the provisioner's own account: %w", err)
	}
	if _, err := s.resolver.Update(ctx, signed); err != nil {
		return fmt.Errorf("push the self-service export of the provisioner's own account: %w", err)
	}
	s.log.Info("added the self-service export to the provisioner's own account", "account", pub, "subject", want.Subject)
	return nil
}

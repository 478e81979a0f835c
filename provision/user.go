package provision

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// CreateUser issues a user JWT signed by the account's signing key, with
// issuer_account set so that it works under strict_signing_key_usage, and
// records it. User seeds are never stored. A user public key is issued
// once: a key with a record (issued before, or revoked) is refused, so a
// revoked key can never come back with a newer JWT.
func (s *Service) CreateUser(ctx context.Context, req api.CreateUserRequest) (*api.CreateUserReply, error) {
	u, err := newUserRequest(req)
	if err != nil {
		return nil, err
	}
	a, err := s.live(ctx, req.Account, "given users")
	if err != nil {
		return nil, err
	}
	caller := api.Caller{Kind: "admin"}
	// A role's user whose name or tags are more than one subject token
	// fits only templates that do not put them into subjects. A change of
	// the template on another instance checks the role's active users in
	// that instance's mirror, which may not hold this user's record yet:
	// a user named "*" issued as "telemetry.{{name()}}.>" was stored and
	// replied got "telemetry.*.>", every device's subjects. Such a user's
	// record is written before the reply, and the user is checked again
	// against the role's template on the account's latest version once it
	// is stored, as a self-service user is; refused then, it is revoked.
	// Any other user fits every template a change can make as far as its
	// subjects go (at worst the server refuses it at connect), and pays
	// no read of the bucket.
	var withdrawn bool
	if u.role != "" && !templateSafe(u.claims.Name, u.claims.Tags) {
		u.recorded = func(ctx context.Context, rec User) error {
			now, ok, err := s.latestOnceRecorded(ctx, a, rec, "the role's template")
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: account %s was deleted", ErrNotFound, a.PublicKey)
			}
			if !ok {
				withdrawn = err != nil
				return err
			}
			st, err := s.state(now)
			if err != nil {
				return err
			}
			err = roleFits(st.claims, rec)
			withdrawn = err != nil
			return err
		}
	}
	out, rec, err := s.issue(ctx, a, u, caller)
	if err != nil && withdrawn {
		return nil, s.withdrawRefused(ctx, a, rec, caller, err, refusedWhy(err, "role changed"))
	}
	return out, err
}

// templateSafe tells whether a user's name and every value of its tags
// are one subject token each: no template can then put them into
// subjects as anything but themselves (checkTemplateName, checkTagValues).
// A tag's value is what follows any ':' in it ({{tag(x)}} of "x:v", or of
// "x:y:v" through "x:y").
func templateSafe(name string, tags jwt.TagList) bool {
	if !oneToken(name) {
		return false
	}
	for _, t := range tags {
		for i, r := range t {
			if r == ':' && !oneToken(t[i+1:]) {
				return false
			}
		}
	}
	return true
}

// userRequest is a checked user.create: the claims to sign but for the
// subject and issuer, and how the key is made and returned.
type userRequest struct {
	claims *jwt.UserClaims
	role   string
	pub    string // "" : generate
	xkey   string
	self   bool
	// recorded, when set, is called once the user's record is stored and
	// before anything is handed out: an error refuses the create.
	recorded func(context.Context, User) error
}

// errSealedBearer refuses an xkey for a bearer user: the reply sends the
// JWT in the clear beside the sealed seed, and a bearer JWT connects
// without its seed, so whoever else reads the reply could connect as the
// user, which is what the xkey is asked for to prevent.
const errSealedBearer = "a bearer JWT connects without its seed, and the reply carries the JWT in the clear beside the sealed seed: issue it without \"xkey\", on a connection whose replies no one else reads"

// newUserRequest checks a user.create request as far as it can without the
// account.
func newUserRequest(req api.CreateUserRequest) (*userRequest, error) {
	name, err := checkName("name", req.Name)
	if err != nil {
		return nil, err
	}
	u := &userRequest{pub: strings.TrimSpace(req.PublicKey), xkey: strings.TrimSpace(req.XKey), role: strings.TrimSpace(req.Role)}
	switch {
	case u.xkey != "" && u.pub != "":
		return nil, fmt.Errorf("%w: \"xkey\" seals a generated key's seed; with \"public_key\" there is none to seal", ErrInvalid)
	case u.xkey != "" && !nkeys.IsValidPublicCurveKey(u.xkey):
		return nil, fmt.Errorf("%w: \"xkey\" must be a curve public key (X...), got %s", ErrInvalid, describeKey(u.xkey))
	case u.xkey != "" && req.BearerToken:
		return nil, fmt.Errorf("%w: \"bearer_token\": %s", ErrInvalid, errSealedBearer)
	case u.pub == "":
	case looksLikeSeed(u.pub):
		return nil, fmt.Errorf("%w: \"public_key\": %w", ErrInvalid, errSeedGiven)
	case !nkeys.IsValidPublicUserKey(u.pub):
		return nil, fmt.Errorf("%w: \"public_key\" must be a user public key (U...), got %s", ErrInvalid, describeKey(u.pub))
	}
	if u.role != "" {
		if err := checkRoleName(u.role); err != nil {
			return nil, err
		}
		// A scoped key's template gives these; a user it signs must
		// carry none of its own.
		if req.Permissions != nil || req.Limits != nil || req.BearerToken || len(req.AllowedConnectionTypes) > 0 {
			return nil, fmt.Errorf("%w: a user issued in role %q takes its permissions, limits, bearer_token and allowed_connection_types from the role; leave them out", ErrInvalid, u.role)
		}
	}
	uc := jwt.NewUserClaims("U")
	uc.Name = name
	if req.Permissions != nil {
		uc.Permissions = *req.Permissions
	}
	if err := mergeUserLimits(&uc.Limits, req.Limits); err != nil {
		return nil, err
	}
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%w: \"expires_in\" must be a positive Go duration such as \"24h\" or \"90m\", got %q", ErrInvalid, req.ExpiresIn)
		}
		if d > maxExpiresIn {
			return nil, errExpiresInTooLong(req.ExpiresIn)
		}
		uc.Expires = expiryAfter(d)
	}
	uc.BearerToken = req.BearerToken
	if err := setConnectionTypes(&uc.AllowedConnectionTypes, req.AllowedConnectionTypes); err != nil {
		return nil, err
	}
	if err := setTags(&uc.Tags, req.Tags); err != nil {
		return nil, err
	}
	if u.role != "" {
		// The scope's template is all the user gets.
		uc.Permissions = jwt.Permissions{}
		uc.Limits = jwt.Limits{}
	}
	u.claims = uc
	return u, nil
}

// issue signs and records a user of a live account. It returns the reply
// and the user's record.
func (s *Service) issue(ctx context.Context, a Account, u *userRequest, caller api.Caller) (*api.CreateUserReply, User, error) {
	uc := u.claims
	name := uc.Name
	// The signing key chosen here must still be the account's when the
	// user is recorded: a rotation with revoke_old waits, and the account
	// is read again under the lock, past a rotation that came first.
	defer s.signing.rlock(a.PublicKey)()
	a, err := s.store.Account(ctx, a.PublicKey)
	if err != nil {
		return nil, User{}, err
	}
	if !a.Live() {
		return nil, User{}, fmt.Errorf("%w: account %s was deleted", ErrNotFound, a.PublicKey)
	}
	st, err := s.state(a)
	if err != nil {
		return nil, User{}, err
	}
	if u.pub != "" {
		if err := s.issuable(ctx, a, st.claims, u.pub); err != nil {
			return nil, User{}, err
		}
	}
	if uc.BearerToken && st.claims.Limits.DisallowBearer {
		return nil, User{}, fmt.Errorf("%w: account %q disallows bearer tokens", ErrInvalid, a.Name)
	}
	signer := st.signers[u.role]
	if signer == nil {
		if u.role != "" {
			return nil, User{}, fmt.Errorf("%w: account %q has no role %q (its roles: %s)", ErrInvalid, a.Name, u.role, listOr(roles(a), "none"))
		}
		return nil, User{}, fmt.Errorf("account %s has no signing key in the store", a.PublicKey)
	}
	if u.role != "" {
		signerPub, _ := signer.PublicKey()
		if err := checkTemplateName(st.claims, signerPub, u.role, name); err != nil {
			return nil, User{}, err
		}
		if err := checkTemplateTags(st.claims, signerPub, u.role, uc.Tags); err != nil {
			if u.self {
				return nil, User{}, errSelfTags(u.role, "")
			}
			return nil, User{}, err
		}
		// A bearer JWT connects without its seed, and a self-service
		// reply travels on an inbox other users of the tenant's account
		// may read: there it is as good as a seed in the clear.
		if sc, ok := st.claims.SigningKeys[signerPub].(*jwt.UserScope); ok && sc.Template.BearerToken {
			if u.self {
				return nil, User{}, fmt.Errorf("%w: role %q gives bearer tokens, which connect without their seed; self-service replies travel on the tenant's inbox, where other users of the account may read them: an admin issues users of this role", ErrForbidden, u.role)
			}
			if u.xkey != "" {
				return nil, User{}, fmt.Errorf("%w: role %q gives bearer tokens: %s", ErrInvalid, u.role, errSealedBearer)
			}
		}
	}
	// Only creates of the same name wait for each other, to keep names
	// unique among active users; issuing changes nothing of the account.
	defer s.locks.lock("user:" + a.PublicKey + ":" + name)()
	if active, err := s.activeNamed(ctx, a.PublicKey, name, st.claims); err != nil {
		return nil, User{}, err
	} else if len(active) > 0 {
		// A tenant may revoke only the users issued through self-service:
		// "revoke it first" is advice it cannot follow.
		if i := slices.IndexFunc(active, func(x User) bool { return !x.SelfService }); u.self && i >= 0 {
			return nil, User{}, fmt.Errorf("%w: account %q has an active user named %q (%s), issued by an admin, which self-service cannot revoke; choose another name", ErrConflict, a.Name, name, active[i].PublicKey)
		}
		return nil, User{}, fmt.Errorf("%w: account %q has an active user named %q (%s); revoke it first or choose another name", ErrConflict, a.Name, name, active[0].PublicKey)
	}
	pub := u.pub
	var kp nkeys.KeyPair
	if pub == "" {
		if kp, err = s.userKeys.Get(); err != nil {
			return nil, User{}, fmt.Errorf("create user key: %w", err)
		}
		defer kp.Wipe()
		pub, _ = kp.PublicKey()
	}
	uc.Subject = pub
	uc.IssuerAccount = a.PublicKey
	vr := jwt.CreateValidationResults()
	uc.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, User{}, fmt.Errorf("%w: user JWT would be invalid: %w", ErrInvalid, errors.Join(errs...))
	}
	token, err := uc.Encode(signer)
	if err != nil {
		return nil, User{}, fmt.Errorf("sign user %s: %w", pub, err)
	}
	// The reply is made before the record: it carries the JWT twice (in
	// the creds too), sealed or not, and one over what a reply may carry
	// (as the lists do, the largest account JWT: max_payload less room)
	// was answered 500 "carried out" after the record, with the seed lost
	// and the name taken by an active user nobody had creds for.
	out := &api.CreateUserReply{User: api.User{Name: name, PublicKey: pub, JWT: token}}
	if kp != nil {
		seed, _ := kp.Seed()
		if u.xkey == "" {
			out.User.Seed, out.User.Creds = string(seed), FormatCreds(token, seed)
		} else if out.User.Sealed, err = sealTo(u.xkey, seed, FormatCreds(token, seed)); err != nil {
			return nil, User{}, err
		}
	}
	if size := replySize(out); size > s.jwtLimit() {
		advice := "give it fewer permissions or tags, or raise max_payload"
		if u.self {
			// A tenant's request has no permissions or tags (its role
			// gives them), and max_payload is the operator's: what it
			// can change is the name, and the sealed creds.
			advice = "choose a shorter name; max_payload is the operator's to raise"
			if u.xkey != "" {
				advice = "choose a shorter name, or send \"public_key\" instead of \"xkey\" (the sealed creds carry the JWT again); max_payload is the operator's to raise"
			}
		}
		return nil, User{}, fmt.Errorf("%w: the reply with the user would be about %d bytes (its JWT is %d, and the creds carry it again), over the limit of %d bytes (the servers' max_payload, less room); %s", ErrInvalid, size, len(token), s.jwtLimit(), advice)
	}
	signerPub, _ := signer.PublicKey()
	rec := User{PublicKey: pub, Account: a.PublicKey, Name: name, IssuedAt: uc.IssuedAt, ExpiresAt: uc.Expires, Signer: signerPub, Role: u.role, SelfService: u.self, Tags: slices.Clone([]string(uc.Tags)), TagsRecorded: true}
	// A key the caller sent is recorded durably: the record is what
	// refuses it a second time, on any instance. So is a self-service
	// user: its record is what the account's quota counts, and what lets
	// the tenant revoke it; lost to a kill after the reply, the tenant
	// kept creds that no instance counted. So is one checked again once
	// its record is stored (recorded): it must be stored by then.
	if err := s.store.AddUser(ctx, rec, u.pub != "" || u.self || u.recorded != nil || s.cfg.DurableUserRecords); err != nil {
		if errors.Is(err, ErrUnavailable) {
			err = s.userLanded(ctx, rec, err)
		}
		switch {
		case err == nil:
			// The record landed all the same: the user is issued.
		case errors.Is(err, ErrConflict):
			return nil, User{}, fmt.Errorf("%w: user key %s was issued meanwhile; a key is issued once", ErrConflict, pub)
		default:
			return nil, User{}, fmt.Errorf("record user %s: %w", pub, err)
		}
	}
	if u.recorded != nil {
		if err := u.recorded(ctx, rec); err != nil {
			return nil, rec, err
		}
	}
	s.log.Info("user issued", "account", a.PublicKey, "account_name", a.Name, "user", pub, "name", name, "role", u.role, "self_service", u.self)
	s.emit(ctx, api.Event{Type: api.EventUserCreated, Account: a.PublicKey, AccountName: a.Name, User: pub, UserName: name, Role: u.role, Caller: caller})
	return out, rec, nil
}

// userLanded tells, after a user's record failed as unavailable (err),
// whether it landed all the same on a shared store: nil when the record
// is there, err when the store does not hold it, ErrInDoubt when the
// store cannot tell (a retry of the same name would find an active user
// whose creds nobody got). On a local store a failed write failed: err is
// returned.
func (s *Service) userLanded(ctx context.Context, rec User, err error) error {
	if _, ok := s.store.(latestReader); !ok {
		return err
	}
	var got User
	rerr := readBack(s.halted, func(ctx context.Context) (err error) {
		got, err = s.store.User(ctx, rec.PublicKey)
		return err
	})
	switch {
	case rerr == nil && got.Account == rec.Account && got.Name == rec.Name && got.IssuedAt == rec.IssuedAt && !got.Revoked:
		return nil
	case rerr == nil:
		// Another record of the key (a revoke by key meanwhile). The
		// caller answers the conflict in its own words: the store's
		// error, which names its files or keys, is logged here.
		s.log.Warn("a user record write failed, and the key has another record", "account", rec.Account, "user", rec.PublicKey, "error", err)
		return fmt.Errorf("%w: user key %s has another record", ErrConflict, rec.PublicKey)
	case errors.Is(rerr, ErrNotFound):
		// The store, readable, does not hold it: the write did not
		// land, as landed judges an account's. Read again until
		// landedWait, a write that surely failed was answered 504
		// "may have taken effect" after 15 s instead of 503 retry.
		return err
	}
	return inDoubt("the record of user "+rec.PublicKey, err)
}

// listOr joins names, or says none.
func listOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	return strings.Join(names, ", ")
}

// sealTo seals a generated user's seed and creds to the caller's curve
// key, from a curve key made for this reply alone.
func sealTo(xkey string, seed []byte, creds string) (*api.Sealed, error) {
	sender, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, fmt.Errorf("create curve key: %w", err)
	}
	defer sender.Wipe()
	senderPub, _ := sender.PublicKey()
	sealedSeed, err := sender.Seal(seed, xkey)
	if err != nil {
		return nil, fmt.Errorf("seal seed: %w", err)
	}
	sealedCreds, err := sender.Seal([]byte(creds), xkey)
	if err != nil {
		return nil, fmt.Errorf("seal creds: %w", err)
	}
	return &api.Sealed{Sender: senderPub, Seed: base64.StdEncoding.EncodeToString(sealedSeed), Creds: base64.StdEncoding.EncodeToString(sealedCreds)}, nil
}

// issuable refuses a user key the caller sent that has a record (issued
// before, in this account or another, or revoked) or that the account
// revokes: revocation is by issue time, so a newer JWT for a revoked key
// would be valid again.
func (s *Service) issuable(ctx context.Context, a Account, claims *jwt.AccountClaims, pub string) error {
	if at, ok := claims.Revocations[pub]; ok {
		return fmt.Errorf("%w: user key %s was revoked in account %q at %s; a revoked key is never issued again: make a new key", ErrConflict, pub, a.Name, time.Unix(at, 0).UTC().Format(time.RFC3339))
	}
	u, err := s.store.User(ctx, pub)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("look up user key %s: %w", pub, err)
	case u.Account != a.PublicKey:
		// Nothing of another account's user (its name, when it was
		// issued or revoked) goes to a caller of this one: a tenant may
		// send any key.
		return fmt.Errorf("%w: user key %s has a record in another account (issued or revoked there); a key is issued once: make a new key", ErrConflict, pub)
	case u.Revoked:
		return fmt.Errorf("%w: user key %s was revoked at %s; a revoked key is never issued again: make a new key", ErrConflict, pub, time.Unix(u.IssuedAt, 0).UTC().Format(time.RFC3339))
	}
	return fmt.Errorf("%w: user key %s was issued already, as %q at %s; a key is issued once: make a new key for a new JWT", ErrConflict, pub, u.Name, time.Unix(u.IssuedAt, 0).UTC().Format(time.RFC3339))
}

// activeNamed returns the users of an account with the given name that the
// account JWT has not revoked.
func (s *Service) activeNamed(ctx context.Context, acct, name string, claims *jwt.AccountClaims) ([]User, error) {
	users, err := s.store.UsersNamed(ctx, acct, name)
	if err != nil {
		return nil, err
	}
	now := time.Now().Unix()
	active := users[:0]
	for _, u := range users {
		// An expired user is no longer active, also once its revocation
		// has been pruned.
		if !u.Revoked && (u.ExpiresAt == 0 || u.ExpiresAt > now) && !revokedBy(claims, u) {
			active = append(active, u)
		}
	}
	return active, nil
}

// revokedBy reports whether the account JWT c refuses user u: it revokes
// the user's key at or after its issue time, or no longer holds the key
// that signed it (a rotation's revoke_old removed it, or its role was
// removed). Such a user is cut off on every server as a revoked one is,
// and is not active: its name is free, and it takes no quota. A record
// without its signer (a version 1 user, upgraded by a build that did not
// fill it in) is judged by the revocations alone.
func revokedBy(c *jwt.AccountClaims, u User) bool {
	if c.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) {
		return true
	}
	return u.Signer != "" && u.Signer != c.Subject && !c.SigningKeys.Contains(u.Signer)
}

// ListUsers lists the users issued under an account, with whether the
// account JWT revokes them (or no longer holds their signing key), in
// issue order: by issued_at, then public key.
func (s *Service) ListUsers(ctx context.Context, req api.ListUsersRequest) (*api.ListUsersReply, error) {
	t, err := s.resolve(ctx, req.Account)
	if err != nil {
		return nil, err
	}
	if t.system {
		what := "the system account"
		if t.pub != s.operator().SystemAccount {
			what = "the provisioner's own account"
		}
		return nil, fmt.Errorf("%w: the users of %s %s are not managed by this service", ErrForbidden, what, t.pub)
	}
	a, err := s.store.Account(ctx, t.pub)
	if err != nil {
		return nil, err
	}
	return s.listUsers(ctx, a, req.ListRequest)
}

// listUsers lists the users issued under an account, a page at a time.
func (s *Service) listUsers(ctx context.Context, a Account, req api.ListRequest) (*api.ListUsersReply, error) {
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	stored, err := s.store.Users(ctx, a.PublicKey)
	if err != nil {
		return nil, err
	}
	users := stored[:0]
	for _, u := range stored {
		if u.Name != "" { // a revoked key never issued has no name and no row
			users = append(users, u)
		}
	}
	// The store lists records in the order they reached it, which differs
	// between instances on one bucket (each sees its own writes first) and
	// moves a revoked user to the end: pages answered by different
	// instances, or read around a revoke, skipped and repeated users. By
	// issued_at, then public key, the order is the same on every instance
	// and a user keeps its place for good (client.Users relies on it).
	slices.SortFunc(users, func(a, b User) int {
		if c := cmp.Compare(a.IssuedAt, b.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.PublicKey, b.PublicKey)
	})
	now := time.Now().Unix()
	summary := func(u User) api.UserSummary {
		return api.UserSummary{
			Name:        u.Name,
			PublicKey:   u.PublicKey,
			IssuedAt:    u.IssuedAt,
			ExpiresAt:   u.ExpiresAt,
			Revoked:     revokedBy(st.claims, u),
			Expired:     u.ExpiresAt != 0 && u.ExpiresAt <= now,
			Role:        u.Role,
			SelfService: u.SelfService,
		}
	}
	// Each entry is measured as the reply encodes it: a name JSON escapes
	// ('<' is six bytes there), a role and an expiry make it much longer
	// than its name alone, and a page over max_payload is no reply.
	page, next, err := s.page(req, len(users), func(i int) int {
		b, _ := json.Marshal(summary(users[i])) // strings, numbers and bools: it cannot fail
		return len(b) + 1
	})
	if err != nil {
		return nil, err
	}
	out := &api.ListUsersReply{Users: make([]api.UserSummary, 0, page.to-page.from), Total: len(users), NextOffset: next}
	for _, u := range users[page.from:page.to] {
		out.Users = append(out.Users, summary(u))
	}
	return out, nil
}

// RevokeUser revokes a user by public key, or by the name of an active user,
// in the account JWT, and pushes it: the user's connections close and it
// cannot connect again. A valid user key this service never issued is
// revoked as well, and recorded so that it is never issued later.
func (s *Service) RevokeUser(ctx context.Context, req api.RevokeUserRequest) (*api.RevokeUserReply, error) {
	ref, err := userRef(req.User)
	if err != nil {
		return nil, err
	}
	a, err := s.live(ctx, req.Account, "changed")
	if err != nil {
		return nil, err
	}
	return s.revoke(ctx, a, ref, false, nil, api.Caller{Kind: "admin"})
}

// userRef checks the "user" of a revoke: a user public key or a name.
func userRef(raw string) (string, error) {
	ref := strings.TrimSpace(raw)
	switch {
	case ref == "":
		return "", fmt.Errorf("%w: \"user\" is required: a user public key (U...) or the name of an active user", ErrInvalid)
	case looksLikeSeed(ref):
		return "", fmt.Errorf("%w: \"user\": %w", ErrInvalid, errSeedGiven)
	case nkeys.IsValidPublicKey(ref) && !nkeys.IsValidPublicUserKey(ref):
		return "", fmt.Errorf("%w: \"user\" must be a user public key (U...) or a user name, got %s", ErrInvalid, describeKey(ref))
	}
	return ref, nil
}

// revoke revokes a user of a live account by key or by the name of an
// active user. With selfOnly, only users issued through self-service may be
// named, and a key must be one. allowed, when not nil, checks the version
// the revocation joins and refuses it with its error.
func (s *Service) revoke(ctx context.Context, a Account, ref string, selfOnly bool, allowed func(Account) error, caller api.Caller) (*api.RevokeUserReply, error) {
	pub := ref
	var name, role string
	var issued int64
	unrecorded := false
	if nkeys.IsValidPublicUserKey(ref) {
		var err error
		if name, role, issued, unrecorded, err = s.keyTarget(ctx, a, pub, selfOnly); err != nil {
			return nil, err
		}
	} else {
		st, err := s.state(a)
		if err != nil {
			return nil, err
		}
		active, err := s.activeNamed(ctx, a.PublicKey, ref, st.claims)
		if err != nil {
			return nil, err
		}
		if selfOnly {
			all := len(active)
			active = slices.DeleteFunc(active, func(u User) bool { return !u.SelfService })
			if len(active) == 0 && all > 0 {
				// The tenant sees this user in self.user.list: it is there,
				// only not its to revoke (as keyTarget says for its key).
				return nil, fmt.Errorf("%w: user %q of account %q was not issued through self-service; an admin revokes it", ErrForbidden, ref, a.Name)
			}
		}
		if len(active) == 0 {
			return nil, fmt.Errorf("%w: account %q has no active user named %q", ErrNotFound, a.Name, ref)
		}
		pub, name, role, issued = active[len(active)-1].PublicKey, ref, active[len(active)-1].Role, active[len(active)-1].IssuedAt
	}
	// Repeatable: a revocation made again on top of one that holds it
	// moves its time on, which cuts off no other key.
	out, err := s.submitRepeatable(a.PublicKey, func(next *Account, c *jwt.AccountClaims) error {
		// A tenant's revoke is checked again on the version it joins:
		// an account.update that turned self-service off, or set a
		// self_service_role the caller is not in, and replied while
		// this revoke was on its way, came first (on any instance: a
		// version built on an older one is made again on the newer).
		if allowed != nil {
			if err := allowed(*next); err != nil {
				return err
			}
		}
		// At the user's issue time at the least: an instance whose clock
		// runs ahead of this one may have issued it "later" than now.
		c.RevokeAt(pub, time.Unix(max(time.Now().Unix(), issued), 0))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if unrecorded {
		// The revocation is in the account's version: only now is the
		// key recorded as revoked, before the reply, so that no instance
		// issues it once the revoke is acknowledged. Recorded before the
		// change, a refused change (a JWT too large, the account deleted
		// meanwhile, a failed push put back) left the record: the key
		// could never be issued, and was refused as "revoked" although
		// nothing revoked it.
		again, err := s.recordRevoked(ctx, a, pub, issued)
		if err != nil {
			return nil, err
		}
		if again {
			return s.revoke(ctx, a, ref, selfOnly, allowed, caller)
		}
	}
	s.log.Info("user revoked", "account", a.PublicKey, "account_name", a.Name, "user", pub, "name", name)
	// The role, as user.created's event has it: an audit that follows a
	// role's users sees their revocations too.
	s.emit(ctx, api.Event{Type: api.EventUserRevoked, Account: a.PublicKey, AccountName: a.Name, User: pub, UserName: name, Role: role, Caller: caller})
	rep := &api.RevokeUserReply{
		Revoked: pub,
		Account: api.Account{Name: out.account.Name, PublicKey: a.PublicKey, JWT: out.account.JWT},
	}
	rep.Resolver, rep.ResolverOmitted = wireResult(out.result)
	return rep, nil
}

// keyTarget checks a revoke by key and returns the name, role and issue
// time of the user it revokes. The key's record must be of account a (with
// selfOnly, of a self-service user). A key with no record, never issued
// here, is returned unrecorded, with its issue time given as maxClockLead
// from now: the revoke records it as revoked once the revocation is in the
// account's version (recordRevoked), so that it can never be issued later.
func (s *Service) keyTarget(ctx context.Context, a Account, pub string, selfOnly bool) (name, role string, issued int64, unrecorded bool, err error) {
	u, err := s.store.User(ctx, pub)
	switch {
	case errors.Is(err, ErrNotFound) && selfOnly:
		return "", "", 0, false, fmt.Errorf("%w: account %q has no self-service user %s", ErrNotFound, a.Name, pub)
	case errors.Is(err, ErrNotFound):
		// No instance recorded the key, yet one may have issued it
		// (its record still gathering for a pack, or lost to a
		// kill -9) with its clock ahead of this one's: revoked at
		// this clock's now, that JWT's later iat kept it valid.
		// Revoked up to the clock lead the instances tolerate, it
		// covers any JWT of the key they could have signed.
		return "", "", time.Now().Add(maxClockLead).Unix(), true, nil
	case err != nil:
		return "", "", 0, false, fmt.Errorf("look up user key %s: %w", pub, err)
	case u.Account != a.PublicKey && selfOnly:
		return "", "", 0, false, fmt.Errorf("%w: account %q has no self-service user %s", ErrNotFound, a.Name, pub)
	case u.Account != a.PublicKey:
		return "", "", 0, false, fmt.Errorf("%w: user key %s belongs to account %s, not %q", ErrInvalid, pub, u.Account, a.Name)
	case selfOnly && !u.SelfService:
		return "", "", 0, false, fmt.Errorf("%w: user %s of account %q was not issued through self-service; an admin revokes it", ErrForbidden, pub, a.Name)
	case u.Revoked:
		// A key recorded as revoked, never issued here: an earlier revoke
		// of it recorded it at its clock's now, once its revocation was
		// in the account's version. It covers, as that revoke did, the
		// JWTs an instance with its clock ahead could have signed before
		// the record stopped every issue of the key: revoked at the
		// record's time only, a repeat within the lead left such a JWT
		// valid.
		return "", "", u.IssuedAt + int64(maxClockLead/time.Second), false, nil
	}
	return u.Name, u.Role, u.IssuedAt, false, nil
}

// recordRevoked records a key that had no record as revoked in account a,
// once a revoke put its revocation (at revokedAt) in the account's
// version. When a record of the key landed first (a create or a revoke of
// the same key on another instance, between the lookup and now), it
// reports again when the revoke must be made again from that record: a
// user of a, issued after revokedAt, is not covered by it, and a key of
// another account is refused, as it is when found at once (the revocation
// already in a's version cuts off no user of a: a's never held the key).
func (s *Service) recordRevoked(ctx context.Context, a Account, pub string, revokedAt int64) (again bool, err error) {
	rec := User{PublicKey: pub, Account: a.PublicKey, IssuedAt: revokedAt - int64(maxClockLead/time.Second), Revoked: true}
	// A record of the key still in flight (a create's durable write on
	// this instance) refuses this one as a conflict, yet is not found
	// until it is stored: that was answered 404, though the revocation
	// was made. Its outcome is waited for: stored, it is found; not
	// stored, the key is free for this record.
	wait := 10 * time.Millisecond
	deadline := time.Now().Add(recordInFlightWait)
	for {
		err = s.store.AddUser(ctx, rec, true)
		if !errors.Is(err, ErrConflict) {
			if err != nil {
				return false, fmt.Errorf("record revoked key %s (its revocation is in account %q's version; repeat the revoke): %w", pub, a.Name, err)
			}
			return false, nil
		}
		u, err := s.store.User(ctx, pub)
		if err == nil {
			return u.Account != a.PublicKey || (!u.Revoked && u.IssuedAt > revokedAt), nil
		}
		if !errors.Is(err, ErrNotFound) {
			return false, fmt.Errorf("look up user key %s: %w", pub, err)
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%w: record revoked key %s: a record of the key is still being written (its revocation is in account %q's version; repeat the revoke)", ErrUnavailable, pub, a.Name)
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("%w: record revoked key %s: a record of the key is still being written (its revocation is in account %q's version; repeat the revoke): %w", ErrUnavailable, pub, a.Name, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// recordInFlightWait bounds how long a revoke waits for a record of its
// key that is still being written (recordRevoked).
const recordInFlightWait = 15 * time.Second

// describeKey names what kind of key s is, for errors; it never echoes a
// seed.
func describeKey(s string) string {
	switch {
	case looksLikeSeed(s):
		return "a seed"
	case nkeys.IsValidPublicKey(s):
		return fmt.Sprintf("a %s public key (%s)", keyKind(s), s)
	}
	return fmt.Sprintf("%q, which is not an nkey", s)
}

// replySize bounds the size of user.create's reply as JSON, without the
// encoding (a second one on every create): each string at its length,
// plus what JSON escapes add (a creds file's newlines; any name byte at
// most six, as \u003c), plus the field names.
func replySize(r *api.CreateUserReply) int {
	u := r.User
	n := 160 + 6*len(u.Name) + len(u.PublicKey) + len(u.JWT) + len(u.Seed) + len(u.Creds) + strings.Count(u.Creds, "\n")
	if u.Sealed != nil {
		n += len(u.Sealed.Sender) + len(u.Sealed.Seed) + len(u.Sealed.Creds)
	}
	return n
}

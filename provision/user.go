package provision

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
	name, err := checkName("name", req.Name)
	if err != nil {
		return nil, err
	}
	var kp nkeys.KeyPair
	pub := strings.TrimSpace(req.PublicKey)
	given := pub != ""
	xkey := strings.TrimSpace(req.XKey)
	switch {
	case xkey != "" && given:
		return nil, fmt.Errorf("%w: \"xkey\" seals a generated key's seed; with \"public_key\" there is none to seal", ErrInvalid)
	case xkey != "" && !nkeys.IsValidPublicCurveKey(xkey):
		return nil, fmt.Errorf("%w: \"xkey\" must be a curve public key (X...), got %s", ErrInvalid, describeKey(xkey))
	}
	switch {
	case !given:
	case looksLikeSeed(pub):
		return nil, fmt.Errorf("%w: \"public_key\": %w", ErrInvalid, errSeedGiven)
	case !nkeys.IsValidPublicUserKey(pub):
		return nil, fmt.Errorf("%w: \"public_key\" must be a user public key (U...), got %s", ErrInvalid, describeKey(pub))
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
		uc.Expires = time.Now().Add(d).Unix()
	}
	uc.BearerToken = req.BearerToken
	for _, t := range req.AllowedConnectionTypes {
		uc.AllowedConnectionTypes.Add(t)
	}
	if err := setTags(&uc.Tags, req.Tags); err != nil {
		return nil, err
	}

	a, err := s.live(ctx, req.Account, "given users")
	if err != nil {
		return nil, err
	}
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	if given {
		if err := s.issuable(ctx, a, st.claims, pub); err != nil {
			return nil, err
		}
	}
	if uc.BearerToken && st.claims.Limits.DisallowBearer {
		return nil, fmt.Errorf("%w: account %q disallows bearer tokens", ErrInvalid, a.Name)
	}
	signer := st.signers[""]
	if signer == nil {
		return nil, fmt.Errorf("account %s has no signing key in the store", a.PublicKey)
	}
	// Only creates of the same name wait for each other, to keep names
	// unique among active users; issuing changes nothing of the account.
	defer s.locks.lock("user:" + a.PublicKey + ":" + name)()
	if active, err := s.activeNamed(ctx, a.PublicKey, name, st.claims); err != nil {
		return nil, err
	} else if len(active) > 0 {
		return nil, fmt.Errorf("%w: account %q has an active user named %q (%s); revoke it first or choose another name", ErrConflict, a.Name, name, active[0].PublicKey)
	}
	if !given {
		if kp, err = s.userKeys.Get(); err != nil {
			return nil, fmt.Errorf("create user key: %w", err)
		}
		defer kp.Wipe()
		pub, _ = kp.PublicKey()
	}
	uc.Subject = pub
	uc.IssuerAccount = a.PublicKey
	vr := jwt.CreateValidationResults()
	uc.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("%w: user JWT would be invalid: %w", ErrInvalid, errors.Join(errs...))
	}
	token, err := uc.Encode(signer)
	if err != nil {
		return nil, fmt.Errorf("sign user %s: %w", pub, err)
	}
	signerPub, _ := signer.PublicKey()
	rec := User{PublicKey: pub, Account: a.PublicKey, Name: name, IssuedAt: uc.IssuedAt, ExpiresAt: uc.Expires, Signer: signerPub}
	// A key the caller sent is recorded durably: the record is what
	// refuses it a second time, on any instance.
	if err := s.store.AddUser(ctx, rec, given || s.cfg.DurableUserRecords); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("%w: user key %s was issued meanwhile; a key is issued once", ErrConflict, pub)
		}
		return nil, fmt.Errorf("record user %s: %w", pub, err)
	}
	out := &api.CreateUserReply{User: api.User{Name: name, PublicKey: pub, JWT: token}}
	if kp != nil {
		seed, _ := kp.Seed()
		if xkey == "" {
			out.User.Seed, out.User.Creds = string(seed), formatCreds(token, seed)
		} else if out.User.Sealed, err = sealTo(xkey, seed, formatCreds(token, seed)); err != nil {
			return nil, err
		}
	}
	s.log.Info("user issued", "account", a.PublicKey, "account_name", a.Name, "user", pub, "name", name)
	return out, nil
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
	active := users[:0]
	for _, u := range users {
		if !u.Revoked && !claims.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) {
			active = append(active, u)
		}
	}
	return active, nil
}

// ListUsers lists the users issued under an account, with whether the
// account JWT revokes them.
func (s *Service) ListUsers(ctx context.Context, req api.ListUsersRequest) (*api.ListUsersReply, error) {
	t, err := s.resolve(ctx, req.Account)
	if err != nil {
		return nil, err
	}
	if t.system {
		what := "the system account"
		if t.pub != s.op.SystemAccount {
			what = "the provisioner's own account"
		}
		return nil, fmt.Errorf("%w: the users of %s %s are not managed by this service", ErrForbidden, what, t.pub)
	}
	a, err := s.store.Account(ctx, t.pub)
	if err != nil {
		return nil, err
	}
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
	page, next, err := s.page(req.ListRequest, len(users), func(i int) int { return len(users[i].Name) + 160 })
	if err != nil {
		return nil, err
	}
	out := &api.ListUsersReply{Users: make([]api.UserSummary, 0, page.to-page.from), Total: len(users), NextOffset: next}
	for _, u := range users[page.from:page.to] {
		out.Users = append(out.Users, api.UserSummary{
			Name:      u.Name,
			PublicKey: u.PublicKey,
			IssuedAt:  u.IssuedAt,
			ExpiresAt: u.ExpiresAt,
			Revoked:   st.claims.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)),
		})
	}
	return out, nil
}

// RevokeUser revokes a user by public key, or by the name of an active user,
// in the account JWT, and pushes it: the user's connections close and it
// cannot connect again. A valid user key this service never issued is
// revoked as well, and recorded so that it is never issued later.
func (s *Service) RevokeUser(ctx context.Context, req api.RevokeUserRequest) (*api.RevokeUserReply, error) {
	ref := strings.TrimSpace(req.User)
	switch {
	case ref == "":
		return nil, fmt.Errorf("%w: \"user\" is required: a user public key (U...) or the name of an active user", ErrInvalid)
	case looksLikeSeed(ref):
		return nil, fmt.Errorf("%w: \"user\": %w", ErrInvalid, errSeedGiven)
	case nkeys.IsValidPublicKey(ref) && !nkeys.IsValidPublicUserKey(ref):
		return nil, fmt.Errorf("%w: \"user\" must be a user public key (U...) or a user name, got %s", ErrInvalid, describeKey(ref))
	}
	a, err := s.live(ctx, req.Account, "changed")
	if err != nil {
		return nil, err
	}
	pub := ref
	if nkeys.IsValidPublicUserKey(ref) {
		u, err := s.store.User(ctx, pub)
		switch {
		case errors.Is(err, ErrNotFound):
			// Never issued here: record it, so that it cannot be issued
			// once revoked.
			rec := User{PublicKey: pub, Account: a.PublicKey, IssuedAt: time.Now().Unix(), Revoked: true}
			if err := s.store.AddUser(ctx, rec, true); err != nil && !errors.Is(err, ErrConflict) {
				return nil, fmt.Errorf("record revoked key %s: %w", pub, err)
			}
		case err != nil:
			return nil, fmt.Errorf("look up user key %s: %w", pub, err)
		case u.Account != a.PublicKey:
			return nil, fmt.Errorf("%w: user key %s belongs to account %s, not %q", ErrInvalid, pub, u.Account, a.Name)
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
		if len(active) == 0 {
			return nil, fmt.Errorf("%w: account %q has no active user named %q", ErrNotFound, a.Name, ref)
		}
		pub = active[len(active)-1].PublicKey
	}
	out, err := s.submit(a.PublicKey, func(_ *Account, c *jwt.AccountClaims) error {
		c.Revoke(pub)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("user revoked", "account", a.PublicKey, "account_name", a.Name, "user", pub)
	return &api.RevokeUserReply{
		Revoked:  pub,
		Account:  api.Account{Name: out.account.Name, PublicKey: a.PublicKey, JWT: out.account.JWT},
		Resolver: wireResult(out.result),
	}, nil
}

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

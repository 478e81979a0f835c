package provision

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/keystore"
)

// CreateUser issues a user JWT signed by the account's signing key, with
// issuer_account set so that it works under strict_signing_key_usage, and
// records it. User seeds are never stored.
func (s *Service) CreateUser(ctx context.Context, req api.CreateUserRequest) (*api.CreateUserReply, error) {
	name, err := checkName("name", req.Name)
	if err != nil {
		return nil, err
	}
	var kp nkeys.KeyPair
	pub := strings.TrimSpace(req.PublicKey)
	switch {
	case pub == "":
		if kp, err = s.userKeys.Get(); err != nil {
			return nil, fmt.Errorf("create user key: %w", err)
		}
		defer kp.Wipe()
		pub, _ = kp.PublicKey()
	case looksLikeSeed(pub):
		return nil, fmt.Errorf("%w: \"public_key\": %w", ErrInvalid, errSeedGiven)
	case !nkeys.IsValidPublicUserKey(pub):
		return nil, fmt.Errorf("%w: \"public_key\" must be a user public key (U...), got %s", ErrInvalid, describeKey(pub))
	}
	uc := jwt.NewUserClaims(pub)
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

	// Issuing a user changes nothing of the account: it shares the
	// account's lock with other user creates, so they run in parallel, but
	// waits for a change being pushed (a revoke, a delete) that may yet be
	// undone. Only creates of the same name wait for each other, to keep
	// names unique among active users.
	a, unlock, err := s.lockIn(ctx, req.Account, "given users", true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer s.locks.lock("user:"+a.PublicKey+":"+name, false)()
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	if uc.BearerToken && st.claims.Limits.DisallowBearer {
		return nil, fmt.Errorf("%w: account %q disallows bearer tokens", ErrInvalid, a.Name)
	}
	if active, err := s.activeNamed(a.PublicKey, name, st.claims); err != nil {
		return nil, err
	} else if len(active) > 0 {
		return nil, fmt.Errorf("%w: account %q has an active user named %q (%s); revoke it first or choose another name", ErrConflict, a.Name, name, active[0].PublicKey)
	}
	uc.IssuerAccount = a.PublicKey
	vr := jwt.CreateValidationResults()
	uc.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("%w: user JWT would be invalid: %v", ErrInvalid, errs)
	}
	token, err := uc.Encode(st.signer)
	if err != nil {
		return nil, fmt.Errorf("sign user %s: %w", pub, err)
	}
	rec := keystore.User{Name: name, PublicKey: pub, IssuedAt: uc.IssuedAt, ExpiresAt: uc.Expires}
	if err := s.store.AddUser(ctx, a.PublicKey, rec); err != nil {
		return nil, fmt.Errorf("record user %s: %w", pub, err)
	}
	out := &api.CreateUserReply{User: api.User{Name: name, PublicKey: pub, JWT: token}}
	if kp != nil {
		seed, _ := kp.Seed()
		out.User.Seed, out.User.Creds = string(seed), formatCreds(token, seed)
	}
	s.log.Debug("user issued", "account", a.PublicKey, "user", pub, "name", name)
	return out, nil
}

// activeNamed returns the users of an account with the given name that the
// account JWT has not revoked.
func (s *Service) activeNamed(acct, name string, claims *jwt.AccountClaims) ([]keystore.User, error) {
	users, err := s.store.UsersNamed(acct, name)
	if err != nil {
		return nil, fmt.Errorf("%w: account %s", ErrNotFound, acct)
	}
	active := users[:0]
	for _, u := range users {
		if !claims.Revocations.IsRevoked(u.PublicKey, time.Unix(u.IssuedAt, 0)) {
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
		return nil, fmt.Errorf("%w: the system account's users are not managed by this service", ErrForbidden)
	}
	a, ok := s.store.Account(t.pub)
	if !ok {
		return nil, fmt.Errorf("%w: account %s was deleted", ErrNotFound, t.pub)
	}
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	users, err := s.store.Users(a.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: account %s was deleted", ErrNotFound, t.pub)
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
// revoked as well.
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
	a, unlock, err := s.lockAccount(ctx, req.Account, "changed")
	if err != nil {
		return nil, err
	}
	defer unlock()
	claims, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		return nil, fmt.Errorf("decode stored JWT of %s: %w", a.PublicKey, err)
	}
	pub := ref
	if !nkeys.IsValidPublicUserKey(ref) {
		active, err := s.activeNamed(a.PublicKey, ref, claims)
		if err != nil {
			return nil, err
		}
		if len(active) == 0 {
			return nil, fmt.Errorf("%w: account %q has no active user named %q", ErrNotFound, a.Name, ref)
		}
		pub = active[len(active)-1].PublicKey
	}
	claims.Revoke(pub)
	next, res, err := s.change(ctx, a, claims)
	if err != nil {
		return nil, err
	}
	s.log.Info("user revoked", "account", a.PublicKey, "user", pub)
	return &api.RevokeUserReply{
		Revoked:  pub,
		Account:  api.Account{Name: next.Name, PublicKey: next.PublicKey, JWT: next.JWT},
		Resolver: wireResult(res),
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

package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"provisioner/keystore"
	"provisioner/resolver"
)

// CreateUserRequest is the body of user.create. Permissions and Limits use
// the user JWT's own field names. Without PublicKey the service generates
// the user's key and returns its seed and a creds file; with it, only the
// JWT.
type CreateUserRequest struct {
	Account                string          `json:"account"`
	Name                   string          `json:"name"`
	PublicKey              string          `json:"public_key,omitempty"`
	Permissions            json.RawMessage `json:"permissions,omitempty"`
	Limits                 json.RawMessage `json:"limits,omitempty"`
	ExpiresIn              string          `json:"expires_in,omitempty"`
	BearerToken            bool            `json:"bearer_token,omitempty"`
	AllowedConnectionTypes []string        `json:"allowed_connection_types,omitempty"`
	Tags                   []string        `json:"tags,omitempty"`
}

// UserInfo describes an issued user. Seed and Creds are set only when the
// service generated the key.
type UserInfo struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	JWT       string `json:"jwt"`
	Seed      string `json:"seed,omitempty"`
	Creds     string `json:"creds,omitempty"`
}

// CreateUserReply is the reply of user.create.
type CreateUserReply struct {
	User UserInfo `json:"user"`
}

// UserSummary is one user in user.list.
type UserSummary struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Revoked   bool   `json:"revoked"`
}

// ListUsersRequest is the body of user.list.
type ListUsersRequest struct {
	Account string `json:"account"`
	ListRequest
}

// ListUsersReply is the reply of user.list.
type ListUsersReply struct {
	Users      []UserSummary `json:"users"`
	Total      int           `json:"total"`
	NextOffset int           `json:"next_offset,omitempty"`
}

// RevokeUserRequest is the body of user.revoke: User is a user public key or
// the name of an active user.
type RevokeUserRequest struct {
	Account string `json:"account"`
	User    string `json:"user"`
}

// RevokeUserReply is the reply of user.revoke.
type RevokeUserReply struct {
	Revoked  string          `json:"revoked"`
	Account  AccountInfo     `json:"account"`
	Resolver resolver.Result `json:"resolver"`
}

// CreateUser issues a user JWT signed by the account's signing key, with
// issuer_account set so that it works under strict_signing_key_usage, and
// records it. User seeds are never stored.
func (s *Service) CreateUser(ctx context.Context, req CreateUserRequest) (*CreateUserReply, error) {
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
	if err := decodeStrict("permissions", req.Permissions, &uc.Permissions); err != nil {
		return nil, err
	}
	if err := decodeStrict("limits", req.Limits, &uc.Limits); err != nil {
		return nil, err
	}
	if uc.Limits.Subs < -1 || uc.Limits.Data < -1 || uc.Limits.Payload < -1 {
		return nil, fmt.Errorf("%w: \"limits\": subs, data and payload take -1 for unlimited or a number from 0 up", ErrInvalid)
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
	out := &CreateUserReply{User: UserInfo{Name: name, PublicKey: pub, JWT: token}}
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
func (s *Service) ListUsers(ctx context.Context, req ListUsersRequest) (*ListUsersReply, error) {
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
	out := &ListUsersReply{Users: make([]UserSummary, 0, page.to-page.from), Total: len(users), NextOffset: next}
	for _, u := range users[page.from:page.to] {
		out.Users = append(out.Users, UserSummary{
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
func (s *Service) RevokeUser(ctx context.Context, req RevokeUserRequest) (*RevokeUserReply, error) {
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
	return &RevokeUserReply{
		Revoked:  pub,
		Account:  AccountInfo{Name: next.Name, PublicKey: next.PublicKey, JWT: next.JWT},
		Resolver: res,
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

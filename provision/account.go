package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/keystore"
)

// CreateAccount creates an account with a fresh identity key and a fresh
// account signing key, signs it with the operator signing key, makes its
// keys durable and pushes it. When the push fails, the account is taken back
// and forgotten: no key of a failed create is left as a live account.
func (s *Service) CreateAccount(ctx context.Context, req api.CreateAccountRequest) (*api.AccountReply, error) {
	name, err := checkName("name", req.Name)
	if err != nil {
		return nil, err
	}
	if sys := s.systemName(ctx); sys != "" && name == sys {
		return nil, fmt.Errorf("%w: %q is the name of the system account", ErrConflict, name)
	}
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
	claims.Description = req.Description
	claims.SigningKeys.Add(signerPub)
	if err := mergeAccountFields(claims, req.Limits, req.DefaultPermissions); err != nil {
		return nil, err
	}
	if err := setTags(&claims.Tags, req.Tags); err != nil {
		return nil, err
	}

	defer s.locks.lock("name:"+name, false)()
	if a, ok := s.store.AccountByName(name); ok {
		return nil, fmt.Errorf("%w: an account named %q exists already (%s)", ErrConflict, name, a.PublicKey)
	}
	token, err := s.sign(claims)
	if err != nil {
		return nil, err
	}
	rec := keystore.Account{
		Name:         name,
		PublicKey:    pub,
		IdentitySeed: keystore.Seed(identSeed),
		SigningSeeds: []keystore.Seed{keystore.Seed(signerSeed)},
		JWT:          token,
	}
	// Users may not be issued for it until it is pushed, or taken back.
	defer s.locks.lock("account:"+pub, false)()
	// The keys are durable before any server hears of the account.
	if err := s.store.PutAccount(ctx, rec); err != nil {
		if errors.Is(err, keystore.ErrConflict) {
			return nil, fmt.Errorf("%w: an account named %q exists already", ErrConflict, name)
		}
		return nil, fmt.Errorf("store account %s: %w", pub, err)
	}
	res, err := s.resolver.Update(ctx, token)
	if err != nil {
		s.abandon(rec, mayHaveStored(res, err))
		return nil, fmt.Errorf("push new account %q (%s): %w", name, pub, err)
	}
	s.remember(rec, claims, signer)
	s.log.Info("account created", "account", pub, "name", name, "servers", res.Stored())
	return &api.AccountReply{Account: api.Account{Name: name, PublicKey: pub, JWT: token}, Resolver: wireResult(res)}, nil
}

// abandon takes back an account whose create failed: servers that may have
// stored it get the disabled version and a delete, and the store forgets
// it.
func (s *Service) abandon(rec keystore.Account, stored bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := s.log.With("account", rec.PublicKey)
	if stored {
		if _, err := s.retract(ctx, rec); err != nil {
			log.Error("a failed create was stored by some servers and could not be taken back from them; it is disabled where the disabled version arrived", "error", err)
		}
	}
	if err := s.store.DeleteAccount(ctx, rec.PublicKey); err != nil {
		log.Error("could not forget the keys of a failed create", "error", err)
	}
	s.cache.Delete(rec.PublicKey)
}

// retract pushes the disabled version of an account and then asks the
// servers to delete it.
func (s *Service) retract(ctx context.Context, rec keystore.Account) (PushResult, error) {
	off, err := disabled(rec.JWT)
	if err != nil {
		return nil, err
	}
	token, err := s.sign(off)
	if err != nil {
		return nil, err
	}
	if res, err := s.resolver.Update(ctx, token); err != nil {
		return res, fmt.Errorf("push disabled version: %w", err)
	}
	return s.deleteFromResolver(ctx, rec.PublicKey)
}

// deleteFromResolver sends the DELETE request, a generic JWT whose subject
// and issuer are the operator signing key.
func (s *Service) deleteFromResolver(ctx context.Context, pub string) (PushResult, error) {
	gc := jwt.NewGenericClaims(s.op.SignerKey)
	gc.Data["accounts"] = []string{pub}
	token, err := gc.Encode(s.op.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign delete request: %w", err)
	}
	return s.resolver.Delete(ctx, token)
}

// GetAccount returns an account with its JWT and decoded claims. The system
// account is read from the resolver.
func (s *Service) GetAccount(ctx context.Context, req api.AccountRequest) (*api.AccountReply, error) {
	t, err := s.resolve(ctx, req.Account)
	if err != nil {
		return nil, err
	}
	if t.system {
		token, err := s.resolver.Lookup(ctx, t.pub)
		if err != nil {
			return nil, fmt.Errorf("look up the system account: %w", err)
		}
		claims, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			return nil, fmt.Errorf("decode the system account's JWT: %w", err)
		}
		return &api.AccountReply{Account: api.Account{Name: claims.Name, PublicKey: t.pub, JWT: token, Claims: claims}}, nil
	}
	a, ok := s.store.Account(t.pub)
	if !ok {
		return nil, fmt.Errorf("%w: account %s was deleted", ErrNotFound, t.pub)
	}
	st, err := s.state(a)
	if err != nil {
		return nil, err
	}
	return &api.AccountReply{Account: api.Account{Name: a.Name, PublicKey: a.PublicKey, JWT: a.JWT, Claims: st.claims}}, nil
}

// ListAccounts lists the accounts this service manages, sorted by name, a
// page at a time.
func (s *Service) ListAccounts(_ context.Context, req api.ListRequest) (*api.ListAccountsReply, error) {
	all := s.store.Accounts()
	page, next, err := s.page(req, len(all), func(i int) int { return len(all[i].Name) + len(all[i].PublicKey) + 32 })
	if err != nil {
		return nil, err
	}
	out := make([]api.AccountSummary, 0, page.to-page.from)
	for _, a := range all[page.from:page.to] {
		out = append(out, api.AccountSummary{Name: a.Name, PublicKey: a.PublicKey})
	}
	return &api.ListAccountsReply{Accounts: out, Total: len(all), NextOffset: next}, nil
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
	budget := s.maxJWT - 4096 // room for the envelope
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
	a, unlock, err := s.lockAccount(ctx, req.Account, "updated")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A fresh decode: the cached claims are shared and must not change.
	claims, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		return nil, fmt.Errorf("decode stored JWT of %s: %w", a.PublicKey, err)
	}
	if req.Description != nil {
		claims.Description = *req.Description
	}
	if err := mergeAccountFields(claims, req.Limits, req.DefaultPermissions); err != nil {
		return nil, err
	}
	if req.Tags != nil {
		claims.Tags = nil
		if err := setTags(&claims.Tags, *req.Tags); err != nil {
			return nil, err
		}
	}
	next, res, err := s.change(ctx, a, claims)
	if err != nil {
		return nil, err
	}
	s.log.Info("account updated", "account", a.PublicKey)
	return &api.AccountReply{Account: api.Account{Name: next.Name, PublicKey: next.PublicKey, JWT: next.JWT}, Resolver: wireResult(res)}, nil
}

// change signs new claims for a locked account and publishes them.
func (s *Service) change(ctx context.Context, a keystore.Account, claims *jwt.AccountClaims) (keystore.Account, PushResult, error) {
	token, err := s.sign(claims)
	if err != nil {
		return a, nil, err
	}
	next := a
	next.JWT = token
	res, err := s.publish(ctx, a, next)
	if err != nil {
		return a, nil, err
	}
	if st, err := s.state(a); err == nil {
		s.remember(next, claims, st.signer)
	}
	return next, res, nil
}

// DeleteAccount disables an account everywhere, deletes it from the
// resolver, and forgets it. Its users are disconnected. When the resolver
// refuses the delete, the account is put back as it was.
func (s *Service) DeleteAccount(ctx context.Context, req api.AccountRequest) (*api.DeleteAccountReply, error) {
	a, unlock, err := s.lockAccount(ctx, req.Account, "deleted")
	if err != nil {
		return nil, err
	}
	defer unlock()
	off, err := disabled(a.JWT)
	if err != nil {
		return nil, fmt.Errorf("decode stored JWT of %s: %w", a.PublicKey, err)
	}
	// Servers keep no tombstones and sync the newest JWT to each other: a
	// server that misses the DELETE can only bring back this disabled
	// version, never a live one.
	if _, _, err := s.change(ctx, a, off); err != nil {
		return nil, fmt.Errorf("disable account %s before deleting it: %w", a.PublicKey, err)
	}
	res, err := s.deleteFromResolver(ctx, a.PublicKey)
	if err != nil {
		s.restore(a, true)
		return nil, fmt.Errorf("delete account %s: %w", a.PublicKey, err)
	}
	if err := s.store.DeleteAccount(ctx, a.PublicKey); err != nil {
		return nil, fmt.Errorf("forget account %s: %w", a.PublicKey, err)
	}
	if v, ok := s.cache.LoadAndDelete(a.PublicKey); ok {
		v.(*accountState).signer.Wipe()
	}
	s.log.Info("account deleted", "account", a.PublicKey, "name", a.Name)
	return &api.DeleteAccountReply{Deleted: a.PublicKey, Resolver: wireResult(res)}, nil
}

// DescribeJSONError turns an encoding/json error into a sentence naming the
// field and the problem.
func DescribeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("not valid JSON (at byte %d: %s)", se.Offset, se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "not valid JSON: it ends too early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	}
	return "a " + goKind
}

// checkName validates an account or user name: not empty, at most 128
// characters, no control characters, and not an nkey (a name that parses
// as a key would make "name or public key" ambiguous).
func checkName(field, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", fmt.Errorf("%w: %q is required and must not be empty", ErrInvalid, field)
	case len(name) > 128:
		return "", fmt.Errorf("%w: %q is %d bytes long; at most 128", ErrInvalid, field, len(name))
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", fmt.Errorf("%w: %q must not contain control characters", ErrInvalid, field)
	case looksLikeSeed(name):
		return "", fmt.Errorf("%w: %q: %w", ErrInvalid, field, errSeedGiven)
	case nkeys.IsValidPublicKey(name):
		return "", fmt.Errorf("%w: %q must be a name, not a public key", ErrInvalid, field)
	}
	return name, nil
}

// setTags adds tags, refusing empty ones.
func setTags(list *jwt.TagList, tags []string) error {
	for _, t := range tags {
		if strings.TrimSpace(t) == "" {
			return fmt.Errorf("%w: \"tags\" must not contain empty tags", ErrInvalid)
		}
		list.Add(t)
	}
	return nil
}

package provision

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/keypair"
)

// state is what the service derives from one version of a stored account:
// its decoded claims and its signing key pairs. It is immutable: a new
// version replaces it. Claims must not be modified; change a copy
// (claimsCopy).
type state struct {
	jwt    string
	claims *jwt.AccountClaims
	// signers are the account's signing key pairs by role, derived from
	// the seeds in from.
	signers map[string]nkeys.KeyPair
	from    []SigningKey
}

// state returns the decoded form of a stored account, decoding it only when
// its JWT changed since the last call.
func (s *Service) state(a Account) (*state, error) {
	if v, ok := s.cache.Load(a.PublicKey); ok {
		if st := v.(*state); st.jwt == a.JWT {
			return st, nil
		}
	}
	claims, err := decodeAccount(a.JWT)
	if err != nil {
		return nil, fmt.Errorf("decode stored JWT of %s: %w", a.PublicKey, err)
	}
	st := &state{jwt: a.JWT, claims: claims, signers: map[string]nkeys.KeyPair{}, from: a.SigningKeys}
	for _, sk := range a.SigningKeys {
		if sk.Retired {
			continue // listed in the JWT, signs nothing new
		}
		kp, err := keypair.FromSeed(sk.Seed.Bytes())
		if err != nil {
			return nil, fmt.Errorf("account %s: a stored signing seed is unusable", a.PublicKey)
		}
		if _, ok := st.signers[sk.Role]; !ok {
			st.signers[sk.Role] = kp
		}
	}
	s.cache.Store(a.PublicKey, st)
	return st, nil
}

// forget drops the cached state of an account.
func (s *Service) forget(pub string) {
	if v, ok := s.cache.LoadAndDelete(pub); ok {
		for _, kp := range v.(*state).signers {
			kp.Wipe()
		}
	}
}

// decodeAccount decodes the claims of an account JWT this service signed
// and stored, without verifying the signature again: the store is ours
// (checksummed, sealed) and every JWT in it was checked when it was signed.
// That keeps the change path free of Ed25519 work that grows with nothing.
func decodeAccount(token string) (*jwt.AccountClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var c jwt.AccountClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	if c.Type != jwt.AccountClaim || !nkeys.IsValidPublicAccountKey(c.Subject) {
		return nil, errors.New("not an account JWT")
	}
	return &c, nil
}

// claimsCopy returns a deep copy of claims to change.
func claimsCopy(c *jwt.AccountClaims) (*jwt.AccountClaims, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var out jwt.AccountClaims
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// errJWTFull is the advice of a change refused for making an account JWT
// over the limit: an admin's to follow, which a tenant's revoke words
// otherwise (SelfRevokeUser).
var errJWTFull = errors.New("remove revocations, tags or permissions")

// sign encodes account claims with the operator signing key and validates
// the result as a server would not: the resolver stores whatever UPDATE
// receives, so nothing leaves here unless its issuer is our signing key,
// its subject the account, it is unexpired, valid, and small enough.
func (s *Service) sign(claims *jwt.AccountClaims) (string, error) {
	return s.signKeeping(claims, 0)
}

// signKeeping is sign for a new version of an account whose current version
// expires at kept: a version that keeps an expiry already passed is signed
// all the same. The servers take it (they store an expired account JWT, and
// its users stay shut out), and a change made to an expired account, a
// revocation above all, is in place when the account is renewed: refused,
// a revocation could only follow the renewal, and the user was valid again
// in between. A change that makes the version expired (an expiry already
// passed) is still refused.
func (s *Service) signKeeping(claims *jwt.AccountClaims, kept int64) (string, error) {
	vr := jwt.CreateValidationResults()
	claims.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return "", fmt.Errorf("%w: account JWT would be invalid: %w", ErrInvalid, errors.Join(errs...))
	}
	pub := claims.Subject
	op := s.operator()
	token, err := claims.Encode(op.Signer)
	if err != nil {
		return "", fmt.Errorf("sign account %s: %w", pub, err)
	}
	if len(token) > s.jwtLimit() {
		return "", fmt.Errorf("%w: the account JWT would be %d bytes, over the limit of %d bytes (the servers' max_payload, less room for the reply that carries it); %w", ErrInvalid, len(token), s.jwtLimit(), errJWTFull)
	}
	// Encode filled in the claims it serialized (issuer, issue time, ID):
	// check them as they are, without verifying our own signature again.
	switch {
	case claims.Issuer != op.SignerKey:
		return "", fmt.Errorf("signed account JWT has issuer %s, want the operator signing key %s", claims.Issuer, op.SignerKey)
	case claims.Subject != pub:
		return "", fmt.Errorf("signed account JWT has subject %s, want %s", claims.Subject, pub)
	case claims.Expires != 0 && claims.Expires <= time.Now().Unix() && claims.Expires != kept:
		return "", fmt.Errorf("%w: the account JWT would be expired", ErrInvalid)
	}
	return token, nil
}

// maxClockLead bounds how far the iat of an account's current version may
// be ahead of this machine's clock (another instance's clock ahead of this
// one) before a change gives up instead of waiting.
const maxClockLead = 10 * time.Second

// afterIssue waits until the clock has passed the second iat, so that a
// version signed now has a strictly greater iat: resolver sync between
// servers keeps the greater iat, and with equal ones may keep either, so
// two versions signed in one second could swap on a server that missed the
// later push. pending, when not nil, is called while waiting, to let more
// changes join the version.
func afterIssue(ctx context.Context, iat int64) error {
	for {
		now := time.Now()
		if now.Unix() > iat {
			return nil
		}
		lead := time.Unix(iat+1, 0).Sub(now)
		if lead > maxClockLead {
			return fmt.Errorf("%w: the account's current version was issued %s in the future by this machine's clock, and versions only move forward; nothing was changed: check the clocks of the provisioner instances (NTP)", ErrClockBehind, lead.Round(time.Second))
		}
		t := time.NewTimer(lead)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// disable changes claims so that nobody can connect and nothing answers
// for the account: no connections, no leaf nodes, JetStream off, every
// user revoked. It is what the servers keep of a deleted
// account until the DELETE, and what a server that missed the DELETE can
// bring back.
func disable(c *jwt.AccountClaims) {
	// No expiry: an expired account could not be signed disabled, and a
	// disabled version that expired could not be pushed again.
	c.Expires = 0
	c.Limits.Conn = 0
	c.Limits.LeafNodeConn = 0
	// JetStream off: it answers without a connection, so an account
	// importing the deleted account's JetStream API (or a stream's
	// deliveries) went on reading its streams. The servers stop the
	// streams and keep their files, as they do when the DELETE arrives;
	// with allow_delete off the disabled version is the end state.
	c.Limits.JetStreamLimits = jwt.JetStreamLimits{}
	c.Limits.JetStreamTieredLimits = nil
	// No imports: an import works without a connection too, so a service
	// the deleted account imported and exported again stayed reachable
	// through it for every account importing that export.
	c.Imports = nil
	c.Revocations = jwt.RevocationList{}
	c.Revocations.Revoke(jwt.All, time.Now())
}

// disable is disable for a version the service signs next: when the
// disabled version would be over the JWT size limit (the revoke-all entry
// it adds can take an account just under the limit past it), it is
// slimmed down to what the servers need of an account nobody can use. A
// delete refused as too large left the account live until someone edited
// it smaller, and a failed create's take-back left it live.
func (s *Service) disable(c *jwt.AccountClaims) {
	disable(c)
	s.slim(c)
}

// slim slims a disabled version down to what the servers need of an
// account nobody can use, when it would be over the JWT size limit.
func (s *Service) slim(c *jwt.AccountClaims) {
	probe, err := claimsCopy(c)
	if err != nil {
		return
	}
	if token, err := probe.Encode(s.operator().Signer); err == nil && len(token) <= s.jwtLimit() {
		return
	}
	// Nothing of these serves without a connection once imports and
	// JetStream are off: exports are answered by the account's
	// connections, users signed by its signing keys (and activations)
	// are revoked with everyone else, and the rest is description.
	c.Description, c.InfoURL = "", ""
	c.Tags = nil
	c.Exports = nil
	c.Mappings = nil
	c.SigningKeys = nil
	c.DefaultPermissions = jwt.Permissions{}
	c.Trace = nil
}

// disabled reports whether claims are a disabled version as disable makes
// it: no connections, and every user revoked.
func disabled(c *jwt.AccountClaims) bool {
	_, all := c.Revocations[jwt.All]
	return all && c.Limits.Conn == 0
}

// stillServes reports whether a disabled version still lets the account
// serve without a connection: JetStream on or imports kept (one made
// before disable turned them off).
func stillServes(c *jwt.AccountClaims) bool {
	return c.Limits.JetStreamLimits != (jwt.JetStreamLimits{}) || len(c.Limits.JetStreamTieredLimits) > 0 || len(c.Imports) > 0
}

// jti returns the ID of a JWT this service signed, "" when it cannot tell.
func jti(token string) string {
	c, err := decodeAccount(token)
	if err != nil {
		return ""
	}
	return c.ID
}

// seedPublic returns the public key of a seed.
func seedPublic(seed Seed) (string, error) {
	kp, err := nkeys.FromSeed(seed.Bytes())
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

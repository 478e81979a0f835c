package provision

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/keystore"
)

// sign encodes account claims with the operator signing key and validates
// the result as a server would not: the resolver stores whatever UPDATE
// receives, so nothing leaves here unless its issuer is our signing key,
// its subject the account, it is unexpired, valid, and small enough.
func (s *Service) sign(claims *jwt.AccountClaims) (string, error) {
	vr := jwt.CreateValidationResults()
	claims.Validate(vr)
	if errs := vr.Errors(); len(errs) > 0 {
		return "", fmt.Errorf("%w: account JWT would be invalid: %w", ErrInvalid, errors.Join(errs...))
	}
	pub := claims.Subject
	token, err := claims.Encode(s.op.Signer)
	if err != nil {
		return "", fmt.Errorf("sign account %s: %w", pub, err)
	}
	if err := s.check(token, claims, pub); err != nil {
		return "", err
	}
	return token, nil
}

// check validates a signed account JWT before it is pushed. Encode has
// filled in the claims it serialized (issuer, issue time, ID), so they are
// checked as they are, without decoding the token and verifying our own
// signature again.
func (s *Service) check(token string, c *jwt.AccountClaims, pub string) error {
	if len(token) > s.maxJWT {
		return fmt.Errorf("%w: the account JWT would be %d bytes, over the servers' limit of %d bytes (max_payload); remove revocations, tags or permissions", ErrInvalid, len(token), s.maxJWT)
	}
	switch {
	case c.Issuer != s.op.SignerKey:
		return fmt.Errorf("signed account JWT has issuer %s, want the operator signing key %s", c.Issuer, s.op.SignerKey)
	case c.Subject != pub:
		return fmt.Errorf("signed account JWT has subject %s, want %s", c.Subject, pub)
	case c.Expires != 0 && c.Expires <= time.Now().Unix():
		return fmt.Errorf("%w: the account JWT would be expired", ErrInvalid)
	}
	return nil
}

// publish makes a new version of an existing account durable and pushes it.
// When the push fails it puts the account back: the store gets the previous
// version again, and if some server had already stored the new one, the
// previous content is signed anew (a server keeps the newest JWT) and
// pushed. The error is the push's.
func (s *Service) publish(ctx context.Context, prev, next keystore.Account) (PushResult, error) {
	if err := s.store.PutAccount(ctx, next); err != nil {
		return nil, fmt.Errorf("store account %s: %w", next.PublicKey, err)
	}
	res, err := s.resolver.Update(ctx, next.JWT)
	if err != nil {
		s.restore(prev, mayHaveStored(res, err))
		return res, fmt.Errorf("push account %s: %w", next.PublicKey, err)
	}
	return res, nil
}

// mayHaveStored tells whether a failed push may have left the change on
// some server: one said it stored it, or one may have without saying so (no
// answer in time). Only a push that was never sent, or that every server
// answered without storing, left nothing.
func mayHaveStored(res PushResult, err error) bool {
	switch {
	case errors.Is(err, ErrNotSent):
		return false
	case res.Stored() > 0:
		return true
	}
	for _, r := range res {
		if !r.Answered {
			return true
		}
	}
	return len(res) == 0
}

// restore puts an account back to prev after a failed change. It uses its
// own deadline: the request's may be what ran out.
func (s *Service) restore(prev keystore.Account, repush bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := s.log.With("account", prev.PublicKey)
	if repush {
		claims, err := jwt.DecodeAccountClaims(prev.JWT)
		if err == nil {
			var token string
			if token, err = s.sign(claims); err == nil {
				prev.JWT = token
			}
		}
		if err != nil {
			log.Error("could not re-sign the previous version of an account after a failed push", "error", err)
		}
	}
	if err := s.store.PutAccount(ctx, prev); err != nil {
		log.Error("could not restore an account in the store after a failed push", "error", err)
		return
	}
	if !repush {
		return
	}
	if _, err := s.resolver.Update(ctx, prev.JWT); err != nil {
		log.Error("could not push the previous version of an account after a failed push; servers may hold the failed change until the next one", "error", err)
		return
	}
	log.Info("restored the previous version of an account after a failed push")
}

// disabled returns the claims of an account JWT changed so that nobody can
// connect: no connections, no leaf nodes, every user revoked. It is what a
// server that missed a DELETE brings back.
func disabled(token string) (*jwt.AccountClaims, error) {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return nil, err
	}
	c.Limits.Conn = 0
	c.Limits.LeafNodeConn = 0
	c.Revocations = jwt.RevocationList{}
	c.Revocations.Revoke(jwt.All, time.Now())
	return c, nil
}

package provision

import (
	"context"
	"time"

	"github.com/nats-io/jwt/v2"
)

// prunable returns the revocations of an account that can no longer
// matter. An entry (K, T) rejects K's JWTs issued at or before T; once every
// such JWT has expired (plus RevocationMargin, for clocks that run behind)
// it rejects nothing. The service knows that for the keys it issued: each
// is issued once, with its expiry on record. Entries for keys it never
// issued, or issued without an expiry, stay, and so does "*" (every user)
// of a deleted account's disabled version.
func (s *Service) prunable(ctx context.Context, pub string, c *jwt.AccountClaims) []string {
	cutoff := time.Now().Add(-s.cfg.RevocationMargin).Unix()
	var out []string
	for k, t := range c.Revocations {
		if k == jwt.All {
			continue
		}
		u, err := s.store.User(ctx, k)
		if err != nil || u.Account != pub || u.Revoked || u.ExpiresAt == 0 || u.IssuedAt > t {
			continue
		}
		if u.ExpiresAt < cutoff {
			out = append(out, k)
		}
	}
	return out
}

// prune drops the revocations that can no longer matter, so that the
// account JWT of an account that revokes many short-lived users does not
// grow without end. It returns how many it dropped.
func (s *Service) prune(ctx context.Context, pub string, c *jwt.AccountClaims) int {
	keys := s.prunable(ctx, pub, c)
	for _, k := range keys {
		delete(c.Revocations, k)
	}
	return len(keys)
}

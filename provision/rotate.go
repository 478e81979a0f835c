package provision

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// RotateAccount gives an account new signing keys (prov.account.rotate): a
// new plain signing key and, for each role, a new scoped key with the
// role's template. They sign every user from now on. The keys they replace
// are retired: still listed in the account JWT, so that the users and
// activation tokens they signed keep working, until revoke_old removes
// them — which cuts those users and activations off. A user cut off that
// way cannot be issued again under its old key (a key is issued once):
// issue a new user, with a new key.
func (s *Service) RotateAccount(ctx context.Context, req api.RotateAccountRequest) (*api.RotateAccountReply, error) {
	rotate := req.Rotate == nil || *req.Rotate
	if !rotate && !req.RevokeOld {
		return nil, fmt.Errorf("%w: \"rotate\": false with \"revoke_old\": false changes nothing", ErrInvalid)
	}
	a, err := s.live(ctx, req.Account, "rotated")
	if err != nil {
		return nil, err
	}
	// Users being issued with a key it removes are recorded first; later
	// ones read the new keys once they are pushed. Also without
	// revoke_old: the new keys are in the store before the push, and a
	// push that fails puts the account back without them, so a user
	// signed with one meanwhile got creds that never connect.
	defer s.signing.lock(a.PublicKey)()
	var removed []string
	var before *jwt.AccountClaims
	submit := s.submit
	if !rotate {
		// Only retired keys go: with none, nothing changes.
		submit = s.submitValues
	}
	out, err := submit(a.PublicKey, func(next *Account, claims *jwt.AccountClaims) error {
		// On a copy: a step that fails half way leaves the claims as they
		// were, with no key listed whose seed is gone.
		c, err := claimsCopy(claims)
		if err != nil {
			return err
		}
		keys := slices.Clone(next.SigningKeys)
		var gone []string
		if rotate {
			fresh := []SigningKey{}
			for i, sk := range keys {
				if sk.Retired {
					continue
				}
				seed, pub, err := s.newSigningKey()
				if err != nil {
					return fmt.Errorf("create signing key: %w", err)
				}
				old, err := seedPublic(sk.Seed)
				if err != nil {
					return fmt.Errorf("account %s: a stored signing seed is unusable", next.PublicKey)
				}
				if sk.Role == "" {
					c.SigningKeys.Add(pub)
				} else {
					scope, ok := c.SigningKeys.GetScope(old)
					us, isUser := scope.(*jwt.UserScope)
					if !ok || !isUser {
						return fmt.Errorf("account %s: role %q has no scope in the JWT", next.PublicKey, sk.Role)
					}
					ns := jwt.NewUserScope()
					ns.Key, ns.Role, ns.Template, ns.Description = pub, sk.Role, us.Template, us.Description
					c.SigningKeys.AddScopedSigner(ns)
				}
				keys[i].Retired = true
				fresh = append(fresh, SigningKey{Seed: seed, Role: sk.Role})
			}
			// The plain key in use stays first.
			keys = append(fresh, keys...)
		}
		if req.RevokeOld {
			for _, sk := range keys {
				if sk.Retired {
					if pub, err := seedPublic(sk.Seed); err == nil {
						c.SigningKeys.Remove(pub)
						gone = append(gone, pub)
					}
				}
			}
			keys = slices.DeleteFunc(keys, func(sk SigningKey) bool { return sk.Retired })
		}
		// The reply lists every key (signing_keys, retired, removed)
		// beside the JWT, more than the reply's room for its envelope
		// holds for an account of many roles: rotated near the largest
		// JWT, it was made and pushed, then answered 500 "its reply would
		// be over max_payload", and a retry rotated it again. The keys
		// take room of their own: refused here, it is made nowhere.
		if listed := (len(keys) + len(gone)) * listedKeySize; listed > 0 {
			probe, err := claimsCopy(c)
			if err != nil {
				return err
			}
			token, err := s.signKeeping(probe, claims.Expires)
			if err != nil {
				return err
			}
			if len(token)+listed > s.jwtLimit() {
				return fmt.Errorf("%w: the rotated account JWT would be %d bytes, and the reply lists its %d signing keys besides: over the limit of %d bytes (the servers' max_payload, less room); remove revocations, tags or roles first, or rotate with \"revoke_old\"", ErrInvalid, len(token), len(keys)+len(gone), s.jwtLimit())
			}
		}
		next.SigningKeys = keys
		if len(gone) > 0 {
			prev := *claims // what the imports it cuts off were served by
			before = &prev
		}
		*claims = *c
		removed = gone
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &api.RotateAccountReply{
		Account: api.Account{Name: out.account.Name, PublicKey: a.PublicKey, JWT: out.account.JWT},
		Removed: removed,
	}
	rep.Resolver, rep.ResolverOmitted = wireResult(out.result)
	for _, sk := range out.account.SigningKeys {
		pub, err := seedPublic(sk.Seed)
		if err != nil {
			continue
		}
		if sk.Retired {
			rep.Retired = append(rep.Retired, pub)
		} else {
			rep.SigningKeys = append(rep.SigningKeys, pub)
		}
	}
	if out.unchanged {
		return rep, nil // no retired keys: no new version, nothing to audit
	}
	if len(removed) > 0 && before != nil {
		// Activations the removed keys signed no longer count: the
		// imports they served are cut off, as by an update of exports.
		if after, err := s.claimsOf(out.account); err == nil {
			rep.CutImports, rep.CutImportsOmitted, rep.CutImportsIncomplete = s.cutImports(ctx, a.PublicKey, out.account.Revision, before, after, serversRoomLeft(rep.Resolver))
		}
	}
	s.log.Info("account signing keys rotated", "account", a.PublicKey, "name", a.Name, "rotated", rotate, "removed", len(removed))
	s.emit(ctx, api.Event{Type: api.EventAccountUpdated, Account: a.PublicKey, AccountName: a.Name})
	return rep, nil
}

// listedKeySize is what one public key takes in a JSON list: its 56
// characters, quotes and a comma.
const listedKeySize = 59

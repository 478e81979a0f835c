package client

import (
	"context"
	"fmt"
	"iter"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// User is an issued user. Seed and Creds are set only when the client made
// the key; Creds is the creds file (JWT and seed) that nats.UserCredentials
// and the nats CLI read. Wipe it when the secrets are stored.
type User struct {
	Name      string
	PublicKey string
	JWT       string
	Seed      Secret
	Creds     Secret
}

// Wipe clears the seed and the creds.
func (u *User) Wipe() {
	u.Seed.Wipe()
	u.Creds.Wipe()
}

// CreateUser issues a user. Without req.PublicKey it makes the user's key
// pair here, sends only its public key, and returns the seed and a creds
// file formatted here: the seed never crosses the wire, and the service
// never sees it, so req.XKey (which asks the service to seal a seed it
// makes) is not sent. With req.PublicKey (the caller holds the seed) it
// returns the JWT only. A public_key that holds a seed is refused
// (ErrInvalid) without sending anything. A call without req.PublicKey
// whose outcome is unknown returns a *UserInDoubtError naming the key it
// sent.
func (c *Client) CreateUser(ctx context.Context, req api.CreateUserRequest) (*User, error) {
	if pub := strings.TrimSpace(req.PublicKey); pub != "" {
		if err := notASeed(pub); err != nil {
			return nil, err
		}
		var rep api.CreateUserReply
		if err := c.request(ctx, api.SubjectUserCreate, req, &rep); err != nil {
			return nil, err
		}
		if err := checkIssued(api.SubjectUserCreate, req.Account, pub, rep.User); err != nil {
			return nil, err
		}
		return &User{Name: rep.User.Name, PublicKey: pub, JWT: rep.User.JWT}, nil
	}

	return c.issueLocal(ctx, api.SubjectUserCreate, req.Account, func(pub string) any {
		req.PublicKey, req.XKey = pub, ""
		return req
	})
}

// notASeed refuses a public_key that holds a seed anywhere (a bare seed,
// one in quotes, a whole creds file), before it is sent: the check the
// service makes of every request, made here so that the seed never
// crosses the wire.
func notASeed(pub string) error {
	if strings.HasPrefix(strings.ToUpper(pub), "S") || api.LooksLikeSeed(pub) {
		return fmt.Errorf("%w: \"public_key\" holds a seed, not a user public key (U...); nothing was sent", ErrInvalid)
	}
	return nil
}

// checkIssued checks the user of a reply against the request: its JWT is
// a user JWT for the key pub the request sent, and, when the request named
// its account by public key (A...), signed for that account (by its
// identity key or one of its signing keys). Without the check, a reply for
// another key would leave the caller with a JWT its seed does not match,
// and one for another account with a user of an account it did not ask
// for. An account given by name, or self-service's own account, cannot
// be checked from the reply alone.
func checkIssued(endpoint, account, pub string, u api.User) error {
	claims, err := jwt.DecodeUserClaims(u.JWT)
	if err != nil {
		return fmt.Errorf("client: the %s reply holds no valid user JWT: %w", endpoint, err)
	}
	if claims.Subject != pub || u.PublicKey != pub {
		return fmt.Errorf("client: %s issued %s (JWT subject %s) for the key %s it was sent", endpoint, u.PublicKey, claims.Subject, pub)
	}
	if account = strings.TrimSpace(account); nkeys.IsValidPublicAccountKey(account) {
		issuer := claims.IssuerAccount
		if issuer == "" {
			issuer = claims.Issuer
		}
		if issuer != account {
			return fmt.Errorf("client: %s issued %s in the account %s, not in %s it was sent", endpoint, pub, issuer, account)
		}
	}
	return nil
}

// issueLocal makes a user key pair here, sends the request body made with
// its public key to endpoint, checks the reply (checkIssued; account is
// the request's, "" when the request names none), and returns the user
// with its seed and creds, formatted here.
func (c *Client) issueLocal(ctx context.Context, endpoint, account string, body func(pub string) any) (*User, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("client: make a user key: %w", err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("client: user public key: %w", err)
	}
	var rep api.CreateUserReply
	if err := c.request(ctx, endpoint, body(pub), &rep); err != nil {
		if inDoubt(err) {
			// The seed is wiped with the key pair (no one gets the JWT
			// of a reply that did not come), but the service may issue
			// the key yet: the caller needs it to revoke it.
			return nil, &UserInDoubtError{PublicKey: pub, Err: err}
		}
		return nil, err
	}
	if err := checkIssued(endpoint, account, pub, rep.User); err != nil {
		// A success that is not of the key sent says nothing of what
		// became of that key, and the seed is wiped as for no answer.
		return nil, &UserInDoubtError{PublicKey: pub, Err: err}
	}
	raw, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("client: user seed: %w", err)
	}
	// The key pair's Wipe overwrites raw itself: keep a copy.
	seed := newSecret(append([]byte(nil), raw...))
	creds, err := jwt.FormatUserConfig(rep.User.JWT, seed.Bytes())
	if err != nil {
		seed.Wipe()
		return nil, fmt.Errorf("client: format the creds of %s: %w", pub, err)
	}
	return &User{Name: rep.User.Name, PublicKey: pub, JWT: rep.User.JWT, Seed: seed, Creds: newSecret(creds)}, nil
}

// UserInDoubtError is the error of a CreateUser or SelfCreateUser that
// made the key here, sent the request and got no answer (the context
// ended, the connection went away), a 504, or a success it could not
// read or that is not of the key it sent: the service may have issued
// PublicKey, or may still (a request waiting for a slot, or in nats.go's
// reconnect buffer, is carried out later), and the seed is gone with the
// call. Such a user is of no use to anyone; revoke PublicKey (RevokeUser
// by key: a key revoked before it is issued can never be issued) before
// creating the user again, or its name may stay taken. It matches what
// Err matches (context.DeadlineExceeded, ErrTimeout, ...).
type UserInDoubtError struct {
	PublicKey string
	Err       error
}

func (e *UserInDoubtError) Error() string {
	return fmt.Sprintf("%v; the user key sent, %s, may have been issued: revoke it by that key before creating the user again", e.Err, e.PublicKey)
}

func (e *UserInDoubtError) Unwrap() error { return e.Err }

// ListUsers returns one page of the users issued under an account, in
// issue order (by issued_at, then public key, the same on every instance
// of the service); Users follows next_offset for you.
func (c *Client) ListUsers(ctx context.Context, req api.ListUsersRequest) (*api.ListUsersReply, error) {
	var rep api.ListUsersReply
	if err := c.request(ctx, api.SubjectUserList, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Users iterates over an account's users from start.Offset on, in pages of
// start.Limit (0 lets the service choose), following next_offset until
// the last page. A failed page yields its error once and ends the
// iteration. As Accounts does, it relies on the list's order (issued_at,
// then public key) so that a user that stays is seen once with pages of
// two or more, whichever instance answers each page and whatever is
// issued meanwhile; a user issued meanwhile may be seen or missed.
func (c *Client) Users(ctx context.Context, start api.ListUsersRequest) iter.Seq2[api.UserSummary, error] {
	return pages(start.Offset, userKey, func(offset int) ([]api.UserSummary, int, error) {
		req := start
		req.Offset = offset
		rep, err := c.ListUsers(ctx, req)
		if err != nil {
			return nil, 0, err
		}
		return rep.Users, rep.NextOffset, nil
	})
}

// userKey orders users as the service lists them: issued_at (a JWT's iat,
// never negative, padded to compare as a string), then public key.
func userKey(u api.UserSummary) string {
	return fmt.Sprintf("%020d\x00%s", max(u.IssuedAt, 0), u.PublicKey)
}

// RevokeUser revokes a user, by public key or by the name of an active
// user, and pushes the account: the user's connections close and it cannot
// connect again.
func (c *Client) RevokeUser(ctx context.Context, req api.RevokeUserRequest) (*api.RevokeUserReply, error) {
	var rep api.RevokeUserReply
	if err := c.request(ctx, api.SubjectUserRevoke, req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

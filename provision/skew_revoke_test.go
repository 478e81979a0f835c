package provision_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// signUserAt signs user claims with iat as given, as an instance whose
// clock reads iat does (jwt's Encode always takes this machine's clock).
func signUserAt(t *testing.T, uc *jwt.UserClaims, signer nkeys.KeyPair, iat int64) string {
	t.Helper()
	uc.Issuer, _ = signer.PublicKey()
	uc.IssuedAt = iat
	uc.ID = "skewed-" + uc.Subject
	uc.Type, uc.Version = jwt.UserClaim, 2
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"typ":"JWT","alg":"ed25519-nkey"}`))
	body, err := json.Marshal(uc)
	if err != nil {
		t.Fatal(err)
	}
	signing := header + "." + enc.EncodeToString(body)
	sig, err := signer.Sign([]byte(signing))
	if err != nil {
		t.Fatal(err)
	}
	token := signing + "." + enc.EncodeToString(sig)
	if _, err := jwt.DecodeUserClaims(token); err != nil {
		t.Fatalf("forged user JWT does not decode: %v", err)
	}
	return token
}

// userAhead makes account "acme" and a user of it signed as an instance
// whose clock runs ahead seconds would sign it, with no record here (the
// instance killed before its background record was written), checks that
// it connects, and returns its key, claims and a connect attempt.
func userAhead(t *testing.T, env *provtest.Env, svc *provision.Service, st *kvstore.Store, ahead int64) (string, *jwt.UserClaims, func() error) {
	t.Helper()
	ctx := context.Background()
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.AccountLatest(ctx, acc.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var signer nkeys.KeyPair
	for _, sk := range a.SigningKeys {
		if sk.Role == "" && !sk.Retired {
			if signer, err = nkeys.FromSeed(sk.Seed.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if signer == nil {
		t.Fatal("the account has no plain signing key in the store")
	}
	defer signer.Wipe()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "bob"
	uc.IssuerAccount = acc.Account.PublicKey
	token := signUserAt(t, uc, signer, time.Now().Unix()+ahead)
	connect := func() error {
		nc, err := nats.Connect(env.Server.URL(), nats.UserJWTAndSeed(token, string(useed)), nats.NoReconnect())
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(); err != nil {
		t.Fatalf("the user issued by the instance ahead cannot connect before the revoke: %v", err)
	}
	return upub, uc, connect
}

// TestRevokeUnrecordedKeyIssuedByClockAhead: instance A, whose clock runs
// a few seconds ahead (within what the service accepts, maxClockLead),
// issues a user whose key it made, replies, and is killed before its
// background record is written (or the record is still gathering for a
// pack). The README promises that user.revoke by the public key on
// another instance revokes it. Instance B finds no record and revoked the
// key at its own "now", before the JWT's iat: the acknowledged revoke left
// the creds working.
func TestRevokeUnrecordedKeyIssuedByClockAhead(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	svc, st := kvDomain(t, env, nil)
	ctx := context.Background()
	// What instance A (clock 3 s ahead) handed out; no record of it.
	upub, uc, connect := userAhead(t, env, svc, st, 3)

	rep, err := svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: upub})
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(rep.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(upub, time.Unix(uc.IssuedAt, 0)) {
		t.Errorf("the revoke was acknowledged, but its version revokes %s at %d, before the JWT's iat %d",
			upub, c.Revocations[upub], uc.IssuedAt)
	}
	if err := connect(); err == nil {
		t.Errorf("after an acknowledged user.revoke by key, the user's creds still connect")
	}
}

// failNextPush fails the next push it is armed for, as servers that are
// all down do, and passes every other.
type failNextPush struct {
	provision.Resolver
	armed atomic.Bool
}

func (f *failNextPush) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if f.armed.CompareAndSwap(true, false) {
		return nil, errors.New("no server answered")
	}
	return f.Resolver.Update(ctx, token)
}

// TestRevokeUnrecordedKeyRetriedAfterFailedPush: as above, but the first
// user.revoke by key fails its push (its version is put back), and the
// admin retries at once, as the 504 tells. The first attempt recorded
// the key as revoked (never issued here); the retry found that record
// and revoked the key at the record's time, now, no longer up to the
// clock lead: the JWT of the instance ahead stayed valid after an
// acknowledged revoke.
func TestRevokeUnrecordedKeyRetriedAfterFailedPush(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	fail := &failNextPush{}
	svc, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { fail.Resolver = r; return fail })
	ctx := context.Background()
	upub, uc, connect := userAhead(t, env, svc, st, 5)

	fail.armed.Store(true)
	if _, err := svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: upub}); err == nil {
		t.Fatal("the revoke whose push failed was answered as done")
	}
	rep, err := svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: upub})
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(rep.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(upub, time.Unix(uc.IssuedAt, 0)) {
		t.Errorf("the retried revoke was acknowledged, but its version revokes %s at %d, before the JWT's iat %d",
			upub, c.Revocations[upub], uc.IssuedAt)
	}
	if err := connect(); err == nil {
		t.Errorf("after an acknowledged user.revoke by key (retried), the user's creds still connect")
	}
}

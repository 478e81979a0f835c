package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestRevokeInAnExpiredAccount: a user of an account whose expiry has
// passed can be revoked, so that it stays cut off once the account is
// renewed. Refused ("the account JWT would be expired"), the only order
// left was renew, then revoke, and the user was valid again in between;
// the servers store an expired account JWT (its users stay shut out). A
// change that makes the account expired is still refused.
func TestRevokeInAnExpiredAccount(t *testing.T) {
	t.Parallel()
	env, d, acc := expiringAccount(t, "brief", "2s")
	defer d.stop()
	ctx := context.Background()
	creds, uc := issue(t, d, api.CreateUserRequest{Account: "brief", Name: "u"})
	time.Sleep(3 * time.Second)
	if connects(env, creds) {
		t.Fatal("a user of an expired account connects")
	}
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "brief", User: uc.Subject}); err != nil {
		t.Fatalf("revoke of a user of an expired account: %v", err)
	}
	for _, cp := range d.lookupAll(t, acc.Account.PublicKey) {
		c, err := jwt.DecodeAccountClaims(cp)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Revocations[uc.Subject]; !ok {
			t.Error("a server's copy of the account lacks the revocation")
		}
	}
	renew := "1h"
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "brief", ExpiresIn: &renew}); err != nil {
		t.Fatal(err)
	}
	if connects(env, creds) {
		t.Error("the user revoked while the account was expired connects once it is renewed")
	}
	// Making the account expired is still refused.
	past := "1ns"
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "brief", ExpiresIn: &past}); err == nil {
		t.Error("an update that makes the account expired was made")
	}
}

// TestUserCreateInAnExpiredAccount: user.create in an account whose expiry
// has passed issues the user (pre-provisioning, as README says): its creds
// are shut out while the account is expired and connect once it is renewed.
func TestUserCreateInAnExpiredAccount(t *testing.T) {
	t.Parallel()
	env, d, _ := expiringAccount(t, "lapsed", "2s")
	defer d.stop()
	ctx := context.Background()
	time.Sleep(3 * time.Second)
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "lapsed", Name: "early"})
	if connects(env, creds) {
		t.Fatal("a user issued in an expired account connects before the account is renewed")
	}
	renew := "1h"
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "lapsed", ExpiresIn: &renew}); err != nil {
		t.Fatal(err)
	}
	if !connects(env, creds) {
		t.Error("a user issued while the account was expired does not connect once it is renewed")
	}
}

// expiringAccount starts a domain on a new deployment and creates account
// name on it, expiring in expiresIn. The caller stops the domain.
func expiringAccount(t *testing.T, name, expiresIn string) (*provtest.Env, *domain, *api.AccountReply) {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	acc, err := d.svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: name, ExpiresIn: expiresIn})
	if err != nil {
		d.stop()
		t.Fatal(err)
	}
	return env, d, acc
}

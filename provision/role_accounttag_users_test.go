package provision_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestAccountTagChangeChecksUsersExpansions: the server makes a subject
// of "t.{{account-tag(a)}}.{{tag(b)}}" for every pair of the account's
// values of "a" and the user's values of "b", and refuses the user at
// connect past 4096 in one list. An account.update that gives the account
// more values of "a" must be refused (400) naming the active user it would
// cut off, not cut it off; so must one for a user whose tags were not
// recorded, whose count nobody can check. A change of tags the template
// does not use goes through.
func TestAccountTagChangeChecksUsersExpansions(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Pub: &jwt.Permission{Allow: []string{"t.{{account-tag(a)}}.{{tag(b)}}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: tagValues("a", 64), Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	// 64*64 = 4096: at the server's limit.
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "at", Role: "device", Tags: tagValues("b", 64)})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	if !connects(env, creds) {
		t.Fatal("user with 64x64 subjects cannot connect")
	}
	more := tagValues("a", 65)
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Tags: &more})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), u.User.PublicKey) {
		t.Errorf("account tags making 65x64 subjects for an active user: %v, want invalid naming the user", err)
	}
	if !connects(env, creds) {
		t.Fatal("an account tag change cut off an active user of the role")
	}
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: u.User.PublicKey}); err != nil {
		t.Fatal(err)
	}

	// A record as an earlier version wrote it: no tags recorded.
	a, err := d.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	var signer string
	for k, sk := range c.SigningKeys {
		if s, ok := sk.(*jwt.UserScope); ok && s.Role == "device" {
			signer = k
		}
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	old := provision.User{PublicKey: upub, Account: a.PublicKey, Name: "old", IssuedAt: time.Now().Unix(), Role: "device", Signer: signer}
	if err := d.store.AddUser(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Tags: &more})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), upub) {
		t.Errorf("more values of an account tag the role multiplies by a user's tags, with a user of unrecorded tags: %v, want invalid naming the user", err)
	}
	other := append(tagValues("a", 64), "z:1")
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Tags: &other}); err != nil {
		t.Errorf("account tag change the role's template does not use: %v", err)
	}
}

// tagValues is n tags name:0, name:1, ...: n values of the tag name.
func tagValues(name string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s:%d", name, i))
	}
	return out
}

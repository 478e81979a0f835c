package provision_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleAccountTagExpansionLimit: "t.{{account-tag(a)}}.{{account-tag(a)}}"
// makes a subject for every pair of the account's values of "a", for
// every user of the role whatever its own tags, and past 4096 in one list
// the server refuses every such user at connect. A role and account tags
// that make more must be refused (400) when the account is created or its
// tags changed, even with no user yet: taken, every user.create of the
// role was refused, telling the caller to give the user (who has no tags)
// fewer values.
func TestRoleAccountTagExpansionLimit(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	values := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("a:%d", i))
		}
		return out
	}
	role := func() map[string]*api.Role {
		return map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"t.{{account-tag(a)}}.{{account-tag(a)}}"}}}}
	}
	// 65*65 = 4225: past the server's limit for every user of the role.
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: values(65), Roles: role()})
	if err == nil {
		_, uerr := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
		t.Fatalf("account whose tags make 65x65 subjects of its role's template for every user was created (a user.create of the role: %v), want 400", uerr)
	}
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("account whose tags make 65x65 subjects for every user: %v, want invalid naming the server's limit", err)
	}

	// 64*64 = 4096: at the limit, which the server allows.
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Tags: values(64), Roles: role()}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "beta", Name: "d1", Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Fatal("user of 64x64 subjects cannot connect")
	}
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "beta", User: u.User.PublicKey}); err != nil {
		t.Fatal(err)
	}
	// No active user left: the change would still refuse every later one.
	more := values(65)
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Tags: &more})
	if err == nil {
		_, uerr := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "beta", Name: "d2", Role: "device"})
		t.Fatalf("account tags making 65x65 subjects for every user of a role were taken (a user.create of the role: %v), want 400", uerr)
	}
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "4096") {
		t.Fatalf("account tags making 65x65 subjects for every user of a role: %v, want invalid naming the server's limit", err)
	}
}

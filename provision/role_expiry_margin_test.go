package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleChecksCountAUserJustExpired: a server whose clock runs behind
// takes a user's JWT for a while after its expiry on this instance's
// clock (the room RevocationMargin gives, which prune waits out before it
// drops a revocation). A role template change or an account tag change
// that such a user does not fit must be refused as for an active user,
// not let through because its expiry passed on this clock a moment ago.
func TestRoleChecksCountAUserJustExpired(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	issue := func(acct, name string, tags []string) api.User {
		t.Helper()
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: acct, Name: name, Role: "device", Tags: tags, ExpiresIn: "1s"})
		if err != nil {
			t.Fatal(err)
		}
		return u.User
	}

	role := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	wild := issue("acme", "wild", []string{"site:*"})

	tagRole := &api.Role{Pub: &jwt.Permission{Allow: []string{"t.{{account-tag(a)}}.{{tag(b)}}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Tags: tagValues("a", 64), Roles: map[string]*api.Role{"device": tagRole}}); err != nil {
		t.Fatal(err)
	}
	many := issue("beta", "many", tagValues("b", 64))

	// Both JWTs expired on this clock, well within the margin.
	time.Sleep(2100 * time.Millisecond)

	widened := &api.Role{Pub: &jwt.Permission{Allow: []string{"site.{{tag(site)}}.>"}}}
	_, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{"device": widened}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), wild.PublicKey) {
		t.Errorf("role change giving \"site.*.>\" to a user expired a moment ago: %v, want invalid naming it", err)
	}
	more := tagValues("a", 65)
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Tags: &more})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), many.PublicKey) {
		t.Errorf("account tags making 65x64 subjects for a user expired a moment ago: %v, want invalid naming it", err)
	}
}

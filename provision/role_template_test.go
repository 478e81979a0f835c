package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleTemplateUnknownFunction: a role template holding a template
// function the server does not know ("{{nmae()}}") makes the server refuse
// every user the role signs; the role must be refused (400) on create and
// on update, naming the function, while the server's functions, spaced or
// in any case, are taken and their users connect.
func TestRoleTemplateUnknownFunction(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	bad := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.{{nmae()}}.>"}}}
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": bad}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "nmae()") {
		t.Errorf("create with a role using an unknown template function: %v, want invalid naming it", err)
	}
	good := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.{{ Name() }}.>", "a.{{subject()}}", "b.{{account-name()}}", "c.{{account-subject()}}", "d.{{tag(site)}}", "e.{{ACCOUNT-TAG(tier)}}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: []string{"tier:gold"}, Roles: map[string]*api.Role{"device": good}}); err != nil {
		t.Fatal(err)
	}
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{"device": bad}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "nmae()") {
		t.Errorf("update to a role using an unknown template function: %v, want invalid naming it", err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device", Tags: []string{"site:x"}})
	if err != nil {
		t.Fatal(err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Errorf("a user of the role, left as it was, cannot connect")
	}
}

// TestRoleDenyTagUserWithoutTag: the server refuses a user whose role's
// template denies a subject of one of the user's tags ({{tag(site)}}) when
// the user has no such tag ("generated invalid subject"): user.create must
// refuse it (400) rather than answer with creds that cannot connect.
func TestRoleDenyTagUserWithoutTag(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Sub: &jwt.Permission{Allow: []string{">"}, Deny: []string{"secret.{{tag(site)}}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d0", Role: "device"})
	if err == nil && !connects(env, writeCreds(t, u.User)) {
		t.Errorf("user.create of a user without the tag its role's deny list needs answered with creds that cannot connect")
	} else if err != nil && (!errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "site")) {
		t.Errorf("user.create without the tag: %v, want invalid naming the tag", err)
	}
	u, err = d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device", Tags: []string{"site:x"}})
	if err != nil {
		t.Fatal(err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Errorf("a user with the tag cannot connect")
	}
}

// TestRoleDenyAccountTagMissing: the server refuses every user of a role
// whose template denies a subject of an account tag
// ({{account-tag(tier)}}) the account does not have: a create or update
// that leaves the account so must be refused (400), not lock out the role.
func TestRoleDenyAccountTagMissing(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Sub: &jwt.Permission{Allow: []string{">"}, Deny: []string{"secret.{{account-tag(tier)}}"}}}
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "tier") {
		t.Errorf("create without the account tag the role denies by: %v, want invalid naming the tag", err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: []string{"tier:gold"}, Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	none := []string{}
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Tags: &none})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "tier") {
		t.Errorf("update removing the account tag the role denies by: %v, want invalid naming the tag", err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Errorf("a user of the role cannot connect")
	}
}

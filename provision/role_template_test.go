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
	good := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.{{ Name() }}.>", "a.{{subject()}}", "b.{{account-name()}}", "c.{{account-subject()}}", "d.{{tag(site)}}", "e.{{account-tag(tier)}}"}}}
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

// TestRoleTemplateValuesAreTokens: the server puts a user's tag values
// ({{tag(x)}}), the account's tag values ({{account-tag(x)}}) and the
// account's name ({{account-name()}}) into the subjects of a role's
// template as they are: a value "*" made "telemetry.{{tag(site)}}.>" a
// wildcard over every site's subjects, wider than the role. Such a user,
// account or role is refused (400) naming what is wrong, and a user whose
// values are tokens gets exactly its own subjects.
func TestRoleTemplateValuesAreTokens(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.{{tag(site)}}.>"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}}); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"site:*", "site:>", "site:a.b"} {
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d-" + strings.NewReplacer("*", "star", ">", "gt", ".", "dot").Replace(tag[5:]), Role: "device", Tags: []string{tag}})
		if err == nil {
			// What the server makes of it: another site's subjects.
			got := "not delivered"
			if m, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "watch-" + u.User.PublicKey[:8]}); err == nil {
				sub, _ := dial(t, env, writeCreds(t, m.User)).SubscribeSync("telemetry.other-site.x")
				nc := dial(t, env, writeCreds(t, u.User))
				nc.Flush()
				nc.Publish("telemetry.other-site.x", nil)
				nc.Flush()
				if _, err := sub.NextMsg(time.Second); err == nil {
					got = "delivered"
				}
			}
			t.Errorf("user.create with tag %q was issued (its publish to another site's subject: %s), want 400 naming the tag", tag, got)
			continue
		}
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "site") {
			t.Errorf("user.create with tag %q: %v, want invalid naming the tag", tag, err)
		}
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device", Tags: []string{"site:berlin"}}); err != nil {
		t.Errorf("user.create with a token tag value: %v", err)
	}

	byAccount := &api.Role{Pub: &jwt.Permission{Allow: []string{"svc.{{account-name()}}.{{account-tag(tier)}}.>"}}}
	for _, tc := range []struct {
		name string
		tags []string
		want string
	}{
		{"*", []string{"tier:gold"}, "account's name"},
		{"a.b", []string{"tier:gold"}, "account's name"},
		{"plain", []string{"tier:>"}, "tier"},
	} {
		_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: tc.name, Tags: tc.tags, Roles: map[string]*api.Role{"r": byAccount}})
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("account.create %q %v with a role by account name and tag: %v, want invalid naming the %s", tc.name, tc.tags, err, tc.want)
		}
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "a.b", Tags: []string{"tier:gold"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "a.b", Roles: map[string]*api.Role{"r": byAccount}}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.update adding a role by account name to %q: %v, want invalid", "a.b", err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Tags: []string{"tier:gold"}, Roles: map[string]*api.Role{"r": byAccount}}); err != nil {
		t.Fatalf("account.create with token values: %v", err)
	}
	bad := []string{"tier:*"}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Tags: &bad}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.update to tag tier:* under a role by account tag: %v, want invalid", err)
	}
}

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

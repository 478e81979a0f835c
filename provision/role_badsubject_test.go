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

// TestRoleTemplateInvalidSubjectBesideFunction: in a list of a role's
// template that holds a template function, the server checks every
// subject as it makes it (IsValidSubject after
// processUserPermissionsTemplate), the ones without a function too; one
// jwt takes but the server does not ("a.>.b": nothing may follow ">")
// failed every user of the role at connect from a deny list. Such a role
// is refused (400) naming the subject.
func TestRoleTemplateInvalidSubjectBesideFunction(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	bad := &api.Role{Pub: &jwt.Permission{Allow: []string{">"}, Deny: []string{"secret.{{name()}}", "admin.>.x"}}}
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": bad}})
	if err == nil {
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("role denying %q beside a template function was taken (its user connects: %v), want 400", "admin.>.x", connects(env, writeCreds(t, u.User)))
	}
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "admin.>.x") {
		t.Errorf("role denying %q beside a template function: %v, want invalid naming it", "admin.>.x", err)
	}
}

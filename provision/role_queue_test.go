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

// TestRoleTemplateQueueSubject: a subscribe permission may name a queue
// group ("jobs.> workers"), but in a list of a role's template that holds
// a template function the server reads every entry as a plain subject
// (processUserPermissionsTemplate): the queue entry is an invalid subject,
// dropped from an allow list and, in a deny list, failing every user of
// the role at connect. Such a role is refused (400) on create and update;
// the queue entry in a list without template functions is taken (as are
// the spaces the server allows inside the braces), and its users connect.
func TestRoleTemplateQueueSubject(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	for _, bad := range []*api.Role{
		{Sub: &jwt.Permission{Allow: []string{">"}, Deny: []string{"secret.{{name()}}", "jobs.> workers"}}},
		{Sub: &jwt.Permission{Allow: []string{"inbox.{{name()}}.>", "jobs.> workers"}}},
	} {
		connected, err := func() (bool, error) {
			if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": bad}}); err != nil {
				return false, err
			}
			defer d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
			u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
			if err != nil {
				return false, err
			}
			return connects(env, writeCreds(t, u.User)), nil
		}()
		if err == nil {
			t.Errorf("role with sub %v was taken (its user connects: %v), want 400: the server reads the queue entry as an invalid subject", bad.Sub, connected)
			continue
		}
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "jobs.> workers") {
			t.Errorf("role with sub %v: %v, want invalid naming the queue entry", bad.Sub, err)
		}
	}
	good := &api.Role{Sub: &jwt.Permission{Allow: []string{"jobs.> workers"}, Deny: []string{"secret.{{ name() }}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Roles: map[string]*api.Role{"device": good}}); err != nil {
		t.Fatal(err)
	}
	_, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Roles: map[string]*api.Role{"device": {Sub: &jwt.Permission{Allow: []string{"jobs.> workers", "inbox.{{name()}}.>"}}}}})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("update to a queue entry beside a template function: %v, want invalid", err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "beta", Name: "d1", Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Errorf("a user of a role with a queue entry in a list without template functions cannot connect")
	}
}

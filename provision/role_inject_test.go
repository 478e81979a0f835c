package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleTemplateValueHoldsFunction: the server replaces a template's
// functions one after the other, each everywhere in the subject, so a user
// name or tag value holding a function ("{{account-name()}}") is replaced
// in its turn: a device named so got "x.{{name()}}.{{account-name()}}.>"
// as "x.acme.acme.>", the subjects of the device named "acme". Such a
// name or tag value is refused (400) where the role puts it into subjects.
func TestRoleTemplateValueHoldsFunction(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Pub: &jwt.Permission{Allow: []string{"x.{{name()}}.{{account-name()}}.>", "y.{{tag(site)}}.{{account-name()}}.>"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	for _, req := range []api.CreateUserRequest{
		{Account: "acme", Name: "{{account-name()}}", Role: "device", Tags: []string{"site:s"}},
		{Account: "acme", Name: "d2", Role: "device", Tags: []string{"site:{{account-name()}}"}},
	} {
		u, err := d.svc.CreateUser(ctx, req)
		if err == nil {
			got := "not delivered"
			if m, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "watch-" + u.User.PublicKey[:8]}); err == nil {
				nc := dial(t, env, writeCreds(t, m.User))
				sub, _ := nc.SubscribeSync(">")
				nc.Flush()
				dev := dial(t, env, writeCreds(t, u.User))
				dev.Publish("x.acme.acme.a", nil)
				dev.Publish("y.acme.acme.a", nil)
				dev.Flush()
				if _, err := sub.NextMsg(time.Second); err == nil {
					got = "delivered"
				}
			}
			t.Errorf("user.create %q tags %q was issued (its publish to user acme's subjects: %s), want 400", req.Name, req.Tags, got)
			continue
		}
		if !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("user.create %q tags %q: %v, want invalid", req.Name, req.Tags, err)
		}
	}
}

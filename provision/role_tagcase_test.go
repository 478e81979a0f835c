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

// TestRoleTemplateTagFunctionCase: the server knows {{Tag(site)}} as a tag
// function in any case, but takes the tag's name only after a lowercase
// "tag(" (it looks for tags "tag(site:..."), so it finds none: a deny of
// it refuses every user of the role, tagged or not, and an allow of it is
// dropped. Such a role must be refused (400), not taken as {{tag(site)}}.
func TestRoleTemplateTagFunctionCase(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	for _, subj := range []string{"secret.{{Tag(site)}}", "secret.{{ACCOUNT-TAG(tier)}}"} {
		role := &api.Role{Sub: &jwt.Permission{Allow: []string{">"}, Deny: []string{subj}}}
		name := "acme-" + strings.ToLower(subj[9:12])
		_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Tags: []string{"tier:gold"}, Roles: map[string]*api.Role{"device": role}})
		if err == nil {
			u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: name, Name: "d1", Role: "device", Tags: []string{"site:x"}})
			switch {
			case err != nil:
				t.Errorf("%s: account taken, user.create: %v", subj, err)
			case !connects(env, writeCreds(t, u.User)):
				t.Errorf("%s: role taken, and its user, tagged, got creds that cannot connect", subj)
			}
			continue
		}
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), subj) {
			t.Errorf("%s: %v, want invalid naming the subject", subj, err)
		}
	}
}

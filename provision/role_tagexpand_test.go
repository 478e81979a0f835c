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

// TestRoleTagExpansionLimit: the server makes a subject for every
// combination of the values of the tags a template subject holds, and
// refuses the user at connect when one list of its permissions would get
// more than 4096 (maxPermTemplateSubjectExpansions). A user whose tags
// would do that must be refused (400), not given creds that never
// connect; one just under connects.
func TestRoleTagExpansionLimit(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Pub: &jwt.Permission{Allow: []string{"t.{{tag(a)}}.{{tag(b)}}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	tags := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("a:%d", i), fmt.Sprintf("b:%d", i))
		}
		return out
	}
	// 64*64 = 4096: at the limit, which the server allows.
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "at", Role: "device", Tags: tags(64)})
	if err != nil {
		t.Fatalf("user with 64x64 subjects: %v", err)
	}
	if !connects(env, writeCreds(t, u.User)) {
		t.Fatal("user with 64x64 subjects cannot connect")
	}
	// 65*65 = 4225: past it.
	u, err = d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "past", Role: "device", Tags: tags(65)})
	switch {
	case err == nil && !connects(env, writeCreds(t, u.User)):
		t.Fatal("user.create issued a user whose tags make 4225 subjects, past the server's 4096: its creds cannot connect")
	case err == nil:
		t.Fatal("a user past the server's limit connected; the test's premise is wrong")
	case !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "4096"):
		t.Fatalf("user past the limit: %v, want invalid naming the server's limit", err)
	}
}

package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleTemplateChangeChecksUsersTags: the server applies a role's
// template as it is now to users issued under the old one, putting their
// tags into {{tag(x)}}. A change that would give an active user a wildcard
// ("site:*" into "site.{{tag(site)}}.>") or lock it out (a deny of
// {{tag(site)}} for a user without that tag) is refused, naming the user,
// and changes nothing; once that user is revoked it goes through, and a
// user whose tag is one token connects under it. For a user recorded
// before records held tags, a change of the subjects holding {{tag(x)}}
// is refused, while a change of the others is not.
func TestRoleTemplateChangeChecksUsersTags(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	role := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	issue := func(name string, tags ...string) api.User {
		t.Helper()
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: name, Role: "device", Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		return u.User
	}
	wild := issue("wild", "site:*")
	bare := issue("bare")
	good := issue("good", "site:x")
	template := func() []string {
		t.Helper()
		a, err := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(a.Account.JWT)
		if err != nil {
			t.Fatal(err)
		}
		for _, sk := range c.SigningKeys {
			if s, ok := sk.(*jwt.UserScope); ok && s.Role == "device" {
				return append(append([]string{}, s.Template.Pub.Allow...), s.Template.Pub.Deny...)
			}
		}
		t.Fatal("no scoped key for role device")
		return nil
	}
	update := func(r *api.Role) error {
		_, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{"device": r}})
		return err
	}
	refused := func(r *api.Role, user string, words ...string) {
		t.Helper()
		before := template()
		err := update(r)
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), user) {
			t.Fatalf("role change %v: %v, want invalid naming active user %s", r.Pub, err, user)
		}
		for _, w := range words {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("role change %v: %v, want it to say %q", r.Pub, err, w)
			}
		}
		if after := template(); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("a refused role change changed the template from %q to %q", before, after)
		}
	}

	widened := &api.Role{Pub: &jwt.Permission{Allow: []string{"site.{{tag(site)}}.>"}}}
	refused(widened, wild.PublicKey, `"*"`)
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: wild.PublicKey}); err != nil {
		t.Fatal(err)
	}
	denied := &api.Role{Pub: &jwt.Permission{Allow: []string{"site.{{tag(site)}}.>"}, Deny: []string{"site.{{tag(site)}}.admin"}}}
	refused(denied, bare.PublicKey, "site")
	if err := update(widened); err != nil {
		t.Fatalf("role change with every active user's tag one token: %v", err)
	}
	if !connects(env, writeCreds(t, good)) {
		t.Errorf("user tagged site:x cannot connect under the new template")
	}

	// A record as an earlier version wrote it: no tags recorded.
	a, err := d.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	var signer string
	for k, sk := range c.SigningKeys {
		if s, ok := sk.(*jwt.UserScope); ok && s.Role == "device" {
			signer = k
		}
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	old := provision.User{PublicKey: upub, Account: a.PublicKey, Name: "old", IssuedAt: time.Now().Unix(), Role: "device", Signer: signer}
	if err := d.store.AddUser(ctx, old, true); err != nil {
		t.Fatal(err)
	}
	refused(&api.Role{Pub: &jwt.Permission{Allow: []string{"other.{{tag(site)}}.>"}}}, upub, "recorded")
	if err := update(&api.Role{Pub: &jwt.Permission{Allow: []string{"site.{{tag(site)}}.>", "telemetry.>"}}}); err != nil {
		t.Errorf("role change leaving the subjects with {{tag(site)}} as they were, with a user of unrecorded tags: %v", err)
	}
}

package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRoleTemplateTagNameSpaced: the server trims the spaces around a
// template function ("{{ tag(site) }}") but not those inside its
// parentheses: {{tag( site )}} looks for tags " site :...", which no tag
// is (tags are trimmed), so an allow of it is dropped for every user, the
// tagged ones too, and the role gives nothing there. Such a role must be
// refused (400) naming the subject, not taken as {{tag(site)}}.
func TestRoleTemplateTagNameSpaced(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	for i, subj := range []string{"t.{{tag( site )}}", "t.{{ account-tag( tier) }}"} {
		role := &api.Role{Sub: &jwt.Permission{Allow: []string{subj}}}
		name := []string{"acme", "beta"}[i]
		_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Tags: []string{"tier:gold"}, Roles: map[string]*api.Role{"device": role}})
		if err == nil {
			u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: name, Name: "d1", Role: "device", Tags: []string{"site:gold"}})
			if err != nil {
				t.Fatalf("%s: account taken, user.create: %v", subj, err)
			}
			t.Errorf("%s: role taken; its user, tagged site:gold in an account tagged tier:gold, may subscribe to t.gold: %v", subj, subscribes(t, env, writeCreds(t, u.User), "t.gold"))
			continue
		}
		if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), subj) {
			t.Errorf("%s: %v, want invalid naming the subject", subj, err)
		}
	}
	// Spaces around the function are the server's to trim.
	role := &api.Role{Sub: &jwt.Permission{Allow: []string{"t.{{ tag(site) }}"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma", Roles: map[string]*api.Role{"device": role}}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "gamma", Name: "d1", Role: "device", Tags: []string{"site:gold"}})
	if err != nil {
		t.Fatal(err)
	}
	if !subscribes(t, env, writeCreds(t, u.User), "t.gold") {
		t.Error("t.{{ tag(site) }}: the user tagged site:gold may not subscribe to t.gold")
	}
}

// subscribes tells whether the user of creds may subscribe to subj.
func subscribes(t *testing.T, env *provtest.Env, creds, subj string) bool {
	t.Helper()
	denied := make(chan struct{}, 1)
	nc, err := nats.Connect(env.Server.URL(), nats.UserCredentials(creds), nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				select {
				case denied <- struct{}{}:
				default:
				}
			}
		}))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	if _, err := nc.SubscribeSync(subj); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-denied:
		return false
	case <-time.After(500 * time.Millisecond):
		return true
	}
}

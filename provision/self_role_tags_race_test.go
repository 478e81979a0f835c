package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestSelfCreateRefusedForATagTheRoleNeedsMeanwhile: a self-service
// create on instance a wrote its record only after instance b changed its
// role to deny a subject holding {{tag(site)}}, which needs a tag
// "site:..." on every user. The create, checked again once recorded, is
// refused; the refusal told the tenant to send "tags":["site:<value>"],
// which a self-service request cannot carry. It says, as a create that
// meets the role at once does, that self-service issues users without
// tags.
func TestSelfCreateRefusedForATagTheRoleNeedsMeanwhile(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, b, p := pausedPair(t, env, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
	ctx := context.Background()
	acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {Sub: &jwt.Permission{Allow: []string{"cmd.>"}}}}, SelfService: true})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	created := p.hold(t, func() error {
		_, err := a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: newUserKey()})
		return err
	})
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Sub: &jwt.Permission{Allow: []string{"cmd.>"}, Deny: []string{"cmd.{{tag(site)}}.admin"}}}}}); err != nil {
		t.Fatal(err)
	}
	if err := p.let(t, created, 10*time.Second); err == nil || strings.Contains(err.Error(), `"tags":[`) || !strings.Contains(err.Error(), "without tags") {
		t.Errorf("a self-service create refused for a tag its role needs meanwhile: %v, want a refusal saying self-service issues no tags, not asking for them", err)
	}
}

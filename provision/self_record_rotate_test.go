package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestCreateRecordedAfterRevokeOldOnAnotherInstance: a create on instance
// a (self-service, or an admin's of a role's user named "*", both read
// the account's latest version again once the record is stored) wrote its
// record only after instance b's account.rotate with revoke_old, which
// removed the key that signed the user, was stored and had replied. The
// re-read holds the version without that key: the creds would never
// connect. The create is refused (409, ask again), not answered with them.
func TestCreateRecordedAfterRevokeOldOnAnotherInstance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		self bool
		user string
	}{
		{"self-service", true, "d1"},
		{"admin", false, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			p := &pauseAdd{held: make(chan struct{}), release: make(chan struct{})}
			a, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
				c.ServiceAccount = env.Init.ServiceAccount
				p.Store = c.Store.(*kvstore.Store)
				c.Store = p
			})
			b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
			ctx := context.Background()
			device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
			acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}, SelfService: true})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			p.arm.Store(true)
			created := make(chan error, 1)
			go func() {
				var err error
				if tc.self {
					_, err = a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: tc.user, Role: "device", PublicKey: newUserKey()})
				} else {
					_, err = a.CreateUser(ctx, api.CreateUserRequest{Account: pub, Name: tc.user, Role: "device"})
				}
				created <- err
			}()
			select {
			case <-p.held:
			case <-time.After(10 * time.Second):
				t.Fatal("the create never reached its record")
			}
			if _, err := b.RotateAccount(ctx, api.RotateAccountRequest{Account: pub, RevokeOld: true}); err != nil {
				t.Fatal(err)
			}
			close(p.release)
			select {
			case err := <-created:
				if !errors.Is(err, provision.ErrStale) {
					t.Errorf("a create of %q on instance a, recorded after instance b's rotate with revoke_old removed its signer: %v, want refused as changed meanwhile (its creds cannot connect)", tc.user, err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the create did not end")
			}
			users, err := a.ListUsers(ctx, api.ListUsersRequest{Account: pub})
			if err != nil {
				t.Fatal(err)
			}
			for _, us := range users.Users {
				if us.Name == tc.user && !us.Revoked {
					t.Errorf("user %q, signed by a removed key, is listed active", us.Name)
				}
			}
		})
	}
}

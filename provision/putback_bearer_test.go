package provision_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// refuseAfter, once armed, runs a hook and then has the push refused by
// every server, which stores nothing.
type refuseAfter struct {
	provision.Resolver
	mu   sync.Mutex
	hook func()
}

func (r *refuseAfter) arm(hook func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = hook
}

func (r *refuseAfter) Update(ctx context.Context, token string) (provision.PushResult, error) {
	r.mu.Lock()
	hook := r.hook
	r.hook = nil
	r.mu.Unlock()
	if hook != nil {
		hook()
		res := provision.PushResult{{Server: "x", Code: 500, Message: "jwt store is full", Answered: true}}
		return res, &provision.RefusedError{Result: res, Reason: "jwt store is full"}
	}
	return r.Resolver.Update(ctx, token)
}

// TestPutBackToABearerRoleRevokesSelfServiceUsers: role "device" gives
// bearer tokens; instance b changes it not to, and while that change
// stands instance a issues self-service user d1 of the role (allowed: the
// role no longer gives bearer tokens). b's push fails and the account is
// put back, bearer_token again: d1's JWT, which travelled on the tenant's
// inbox where other users of the account may read it, then connects
// without its seed. A change to the role is refused for such a user
// (checkRoleUsers); the put-back must revoke it.
func TestPutBackToABearerRoleRevokesSelfServiceUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	tune := func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount }
	var r *refuseAfter
	var kv *kvstore.Store
	a, _ := kvDomainOf(t, env, "a", nil, tune)
	b, _ := kvDomainOf(t, env, "b", func(rc provision.Resolver) provision.Resolver {
		r = &refuseAfter{Resolver: rc}
		return r
	}, tune, func(c *provision.Config) { kv = c.Store.(*kvstore.Store) })
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", SelfService: true,
		Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}, BearerToken: true}}})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	var d1 *api.CreateUserReply
	r.arm(func() {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			got, err := a.GetAccount(ctx, api.AccountRequest{Account: pub})
			if err == nil && !bearerOf(got.Account.JWT) {
				break
			}
		}
		var err error
		if d1, err = a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: newUserKey()}); err != nil {
			t.Errorf("instance a's self-service user under b's change (no bearer tokens): %v", err)
			return
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			users, err := kv.Users(ctx, pub)
			if err == nil && slices.ContainsFunc(users, func(u provision.User) bool { return u.PublicKey == d1.User.PublicKey }) {
				return
			}
		}
		t.Errorf("instance b's reads of users do not hold instance a's user %s", d1.User.PublicKey)
	})
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}}}); err == nil {
		t.Fatal("instance b's change, whose push was refused, succeeded")
	}
	if d1 == nil {
		t.Fatal("instance a's self-service user was not issued while b's change stood")
	}
	got, err := kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bearerOf(got.JWT) {
		t.Fatal("the store does not hold the version put back (bearer tokens)")
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0)) {
		t.Errorf("the put-back gives role \"device\" bearer tokens and does not revoke self-service user %s: its JWT, read on the tenant's inbox, connects without its seed", d1.User.PublicKey)
	}
}

// bearerOf tells whether role "device"'s template in an account JWT gives
// bearer tokens.
func bearerOf(token string) bool {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return false
	}
	for _, sk := range c.SigningKeys {
		if us, ok := sk.(*jwt.UserScope); ok && us != nil && us.Role == "device" {
			return us.Template.BearerToken
		}
	}
	return false
}

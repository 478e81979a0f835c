package provision_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/seal"
)

// TestCreateRecordedThenSealedWithAnotherKey: a create on instance a whose
// user's record was stored, and whose account instance b, run with
// another seal_key (a seal_key rotation done in one step, b restarted
// first), changed before the create read it again for its checks (the
// self-service settings, or the role's template of a user named "*"),
// took the version it could not open for a bucket it could not reach:
// the checks made before the record stood, and the user was handed out
// (200), under settings b's version may have replaced (self-service off,
// or a template that gives "*" every device's subjects), while every
// other request for the account is answered 503. The create is refused
// with ErrOtherSealKey (503), nothing handed out, and its user withdrawn
// where it can be (a cannot sign the account: it logs the user to revoke).
func TestCreateRecordedThenSealedWithAnotherKey(t *testing.T) {
	t.Parallel()
	off := false
	desc := "changed on b"
	for _, tc := range []struct {
		name   string
		update api.UpdateAccountRequest
		create func(a *provision.Service, pub string) (*api.CreateUserReply, error)
	}{
		{"self-service off", api.UpdateAccountRequest{SelfService: &off}, func(a *provision.Service, pub string) (*api.CreateUserReply, error) {
			return a.SelfCreateUser(context.Background(), provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: "late", Role: "device", PublicKey: newUserKey()})
		}},
		{"admin create, description changed", api.UpdateAccountRequest{Description: &desc}, func(a *provision.Service, pub string) (*api.CreateUserReply, error) {
			return a.CreateUser(context.Background(), api.CreateUserRequest{Account: pub, Name: "*", Role: "device", PublicKey: newUserKey()})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			p := &pauseAdd{after: true, held: make(chan struct{}), release: make(chan struct{})}
			a, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
				c.ServiceAccount = env.Init.ServiceAccount
				p.Store = c.Store.(*kvstore.Store)
				c.Store = p
			})
			b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) {
				c.ServiceAccount = env.Init.ServiceAccount
				c.Store.Close()
				st, err := kvstore.Open(context.Background(), env.ServiceUser(t), kvstore.Options{Seal: rotatedSealKey(t, env), Bucket: env.Config.KVBucket, Instance: "b", Logger: provtest.Logger(t)})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				c.Store = st
			})
			ctx := context.Background()
			device := &api.Role{Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}}
			acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": device}, SelfService: true})
			if err != nil {
				t.Fatal(err)
			}
			pub := acc.Account.PublicKey
			waitAccount(t, b, pub)
			var got *api.CreateUserReply
			created := p.hold(t, func() (err error) {
				got, err = tc.create(a, pub)
				return err
			})
			u := tc.update
			u.Account = pub
			if _, err := b.UpdateAccount(ctx, u); err != nil {
				t.Fatal(err)
			}
			if err := p.let(t, created, 20*time.Second); !errors.Is(err, provision.ErrOtherSealKey) || got != nil {
				t.Errorf("a create on instance a whose record was stored before instance b (another seal_key) changed the account (%s): %v, %+v; want ErrOtherSealKey (503), nothing handed out", tc.name, err, got)
			}
		})
	}
}

// rotatedSealKey returns a seal key that seals with a new curve key and
// opens what env's seal_key sealed, as an instance restarted first in a
// seal_key rotation done in one step holds.
func rotatedSealKey(t *testing.T, env *provtest.Env) *seal.Key {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	raw, err := os.ReadFile(env.Config.SealKey)
	if err != nil {
		t.Fatal(err)
	}
	old, err := nkeys.FromCurveSeed(raw)
	if err != nil {
		t.Fatalf("%s: %v", env.Config.SealKey, err)
	}
	oldSeed, _ := old.Seed()
	key, err := seal.New(seed, oldSeed)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

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

// TestReconcilerRevokesSelfServiceUsersOfAStandingBearerRole: instance
// b's change of role "device" to give bearer_token is stored, then
// refused once b's reads of users catch up with self-service user d1
// that instance a issued meanwhile; b is killed before its put-back is
// stored. The refused change stays in the store and any reconciler
// pushes it: d1's JWT, which travelled on the tenant's inbox, connects
// without its seed. The template puts neither a name nor a tag into
// subjects, so the pass that repairs refused changes left it; it must
// revoke d1.
func TestReconcilerRevokesSelfServiceUsersOfAStandingBearerRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	tune := func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount }
	st := &crashAfterChange{staleUsers: &staleUsers{}}
	var kv *kvstore.Store
	a, _ := kvDomainOf(t, env, "a", nil, tune)
	b, _ := kvDomainOf(t, env, "b", nil, tune, func(c *provision.Config) {
		kv = c.Store.(*kvstore.Store)
		st.Store = kv
		c.Store = st
	})
	device := func(bearer bool) map[string]*api.Role {
		return map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"telemetry.>"}}, BearerToken: bearer}}
	}
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", SelfService: true, Roles: device(false)})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	if err := st.freeze(ctx, pub); err != nil {
		t.Fatal(err)
	}
	d1, err := a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: newUserKey()})
	if err != nil {
		t.Fatal(err)
	}
	st.arm(pub, 1, nil)
	_, err = b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: device(true)})
	if err == nil || errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change, killed before its put-back: %v, want the put-back's failure", err)
	}
	b.Close()
	got, err := kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bearerOf(got.JWT) {
		t.Fatal("the store does not hold the refused change (bearer tokens)")
	}
	a.SetMisfitsSettle(0)
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if got, err = kv.AccountLatest(ctx, pub); err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(d1.User.PublicKey, time.Unix(userIssued(t, d1.User.JWT), 0)) {
		t.Errorf("after a reconcile pass the store's version gives role \"device\" bearer tokens (%v) and does not revoke self-service user %s: its JWT connects without its seed", bearerOf(got.JWT), d1.User.PublicKey)
	}
}

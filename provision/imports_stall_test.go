package provision_test

import (
	"context"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestNoImportToCheckNeedsNoCatchUp: an import is checked again once its
// change is stored, after the instance's copy of the bucket catches up
// (importsServed), for an exporter's change another instance stored
// meanwhile. A change with no import of another account to check has
// nothing to wait for: a self-service account's create (its one import is
// the service's own) and an update that removes an account's imports
// succeed while the store's watcher is stalled, as they did before the
// check; waiting, they failed 503 and were taken back.
func TestNoImportToCheckNeedsNoCatchUp(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	st := &staleUsers{}
	b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		st.Store = c.Store.(*kvstore.Store)
		c.Store = st
	})
	ctx := context.Background()
	alpha := createAlpha(t, b)
	beta, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: alphaEvents(alpha.Account.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	st.stalled.Store(true)
	if _, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "tenant", SelfService: true}); err != nil {
		t.Errorf("a self-service account's create, with no import of another account, while the watcher is stalled: %v", err)
	}
	none := jwt.Imports{}
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: beta.Account.PublicKey, Imports: &none}); err != nil {
		t.Errorf("an update removing beta's imports while the watcher is stalled: %v", err)
	}
	got, err := b.GetAccount(ctx, api.AccountRequest{Account: beta.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Account.Claims.Imports); n != 0 {
		t.Errorf("beta holds %d imports after their removal", n)
	}
}

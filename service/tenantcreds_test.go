package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestStartRefusesATenantsCredsAsServiceCreds: service_creds pointed at
// the creds of a user of an account the service manages (a tenant's, an
// easy mix-up among creds files). The start took that account for its
// own: it added the self-service export to the tenant's JWT outside the
// store and pushed it, so the servers held a version the store does not,
// and made the account one that requests may not change. It must refuse,
// naming the field and the account, and change nothing.
func TestStartRefusesATenantsCredsAsServiceCreds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.Deployment(t, bootstrap.Options{Store: bootstrap.StoreFile})
	svc := env.Start(t)
	acct, err := svc.Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := client.New(env.Admin(t)).CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(env.Dir, "alice.creds")
	if err := os.WriteFile(creds, u.Creds.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	before := lookup(t, env, acct.Account.PublicKey)

	cfg := *env.Config
	cfg.ServiceCreds = creds
	err = startRefused(t, &cfg)
	for _, want := range []string{"service_creds", acct.Account.PublicKey} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start refused with %q, want it to name %s", err, want)
		}
	}
	if after := lookup(t, env, acct.Account.PublicKey); after != before {
		t.Errorf("the refused start changed acme's JWT on the server")
	}
}

// lookup returns the account's JWT as the server holds it.
func lookup(t *testing.T, env *provtest.Env, pub string) string {
	t.Helper()
	m, err := env.Connect(t, env.Init.ProvisionerCreds).Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return string(m.Data)
}

package provision_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestImportOfDeletedAccountRefused: with allow_delete off, a deleted
// account's disabled version stays on the servers, exports and all. An
// import naming that account by its public key must be refused as an
// import of a deleted account, not checked against the disabled version's
// exports and pushed: the importer would depend on an account that is
// gone.
func TestImportOfDeletedAccountRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	alpha, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "time", Subject: "time.now", Type: jwt.Service},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pub := alpha.Account.PublicKey
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	imports := jwt.Imports{{Name: "time", Subject: "time.now", Account: pub, Type: jwt.Service}}
	_, err = d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: imports})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("create with an import of deleted account %s: %v, want ErrInvalid", pub, err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma"}); err != nil {
		t.Fatal(err)
	}
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "gamma", Imports: &imports})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("update with an import of deleted account %s: %v, want ErrInvalid", pub, err)
	}
}

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

// TestDeletedAccountForwardsNoImports: a deleted account's disabled
// version is what the servers keep (for good with allow_delete off). No
// user can connect to it, but its imports and exports work without a
// connection: an account importing a service the deleted account itself
// imported from a third one and exported again went on reaching that
// service through it after the delete.
func TestDeletedAccountForwardsNoImports(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "backend", Exports: jwt.Exports{
		{Name: "svc", Subject: "svc.>", Type: jwt.Service},
	}}); err != nil {
		t.Fatal(err)
	}
	middle, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "middle",
		Imports: jwt.Imports{{Name: "svc", Subject: "svc.>", Account: "backend", Type: jwt.Service}},
		Exports: jwt.Exports{{Name: "svc", Subject: "svc.>", Type: jwt.Service}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "front",
		Imports: jwt.Imports{{Name: "svc", Subject: "svc.>", Account: "middle", Type: jwt.Service}},
	}); err != nil {
		t.Fatal(err)
	}
	backendCreds, _ := issue(t, d, api.CreateUserRequest{Account: "backend", Name: "responder"})
	frontCreds, _ := issue(t, d, api.CreateUserRequest{Account: "front", Name: "caller"})
	responder := dial(t, env, backendCreds)
	if _, err := responder.Subscribe("svc.>", func(m *nats.Msg) { _ = m.Respond([]byte("answer")) }); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}
	caller := dial(t, env, frontCreds)
	ask := func() error {
		_, err := caller.Request("svc.x", nil, time.Second)
		return err
	}
	if err := ask(); err != nil {
		t.Fatalf("before the delete, front does not reach backend through middle: %v", err)
	}
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: middle.Account.PublicKey}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := ask(); err == nil {
		t.Fatal("after middle's delete, front still reaches backend through middle's import and export")
	}
}

// TestImportOfADroppedTombstoneRefused: with allow_delete off, the servers
// keep a deleted account's disabled version for good, exports and all;
// once its tombstone is dropped (tombstone_retention), the store no longer
// knows it, and an import naming it by key was checked against the
// servers' copy and accepted: an import of an account that is gone.
func TestImportOfADroppedTombstoneRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	gone, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gone", Exports: jwt.Exports{
		{Name: "svc", Subject: "svc.>", Type: jwt.Service},
	}})
	if err != nil {
		t.Fatal(err)
	}
	pub := gone.Account.PublicKey
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	// The tombstone dropped, as tombstone_retention does.
	a, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.store.RemoveAccount(ctx, pub, a.Revision); err != nil {
		t.Fatal(err)
	}
	_, err = d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "importer",
		Imports: jwt.Imports{{Name: "svc", Subject: "svc.>", Account: pub, Type: jwt.Service}},
	})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("import of an account the servers hold disabled: %v, want ErrInvalid saying it is disabled", err)
	}
	if _, err := d.store.AccountByName(ctx, "importer"); err == nil {
		t.Error("the refused create stored the importer")
	}
}

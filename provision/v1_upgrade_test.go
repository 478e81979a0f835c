package provision_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/keystore"
	"github.com/natsprov/provisioner/provtest"
)

// TestV1UsersCutOffByRevokeOld: users recorded by version 1 (package
// keystore, no signer in their records) are upgraded; an account.rotate
// with revoke_old then removes the one signing key that signed them, and
// the servers refuse them. user.list must show them revoked, and their
// names must be free again, as for any user of a removed key.
func TestV1UsersCutOffByRevokeOld(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		d.stop()
		t.Fatal(err)
	}
	creds, uc := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "alice"})
	a, err := d.store.AccountByName(ctx, "acme")
	if err != nil || len(a.SigningKeys) != 1 {
		d.stop()
		t.Fatalf("acme in the store: %d signing keys, %v", len(a.SigningKeys), err)
	}
	d.stop()

	// The same account and user as version 1 wrote them.
	dir := filepath.Join(t.TempDir(), "store")
	ks, err := keystore.Open(dir, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.PutAccount(ctx, keystore.Account{Name: a.Name, PublicKey: a.PublicKey, IdentitySeed: keystore.Seed(a.IdentitySeed),
		SigningSeeds: []keystore.Seed{keystore.Seed(a.SigningKeys[0].Seed)}, JWT: a.JWT}); err != nil {
		t.Fatal(err)
	}
	if err := ks.AddUser(ctx, a.PublicKey, keystore.User{Name: "alice", PublicKey: uc.Subject, IssuedAt: uc.IssuedAt}); err != nil {
		t.Fatal(err)
	}
	if err := ks.Close(); err != nil {
		t.Fatal(err)
	}
	env.Config.StoreDir = dir
	d = newDomain(t, env, nil)
	defer d.stop()
	if !connects(env, creds) {
		t.Fatal("alice cannot connect after the upgrade")
	}
	if _, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme", RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	if connects(env, creds) {
		t.Fatal("alice, signed by the removed key, still connects")
	}
	list, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Users) != 1 || !list.Users[0].Revoked {
		t.Errorf("user.list after revoke_old = %+v, want alice revoked (the servers refuse her)", list.Users)
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"}); err != nil {
		t.Errorf("a new alice after revoke_old cut the old one off: %v", err)
	}
}

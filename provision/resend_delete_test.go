package provision_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// deletedWithoutDelete makes an account on a deployment whose servers do
// not allow deletes (allow_delete false) and deletes it: the disabled
// version stays on the servers as the end state. It returns the
// deployment, its domain (the caller stops it) and the account.
func deletedWithoutDelete(t *testing.T) (*provtest.Env, *domain, string) {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil || rep.Phase != "deleted" {
		t.Fatalf("delete: %+v, %v", rep, err)
	}
	return env, d, created.Account.PublicKey
}

// TestRefusedDeleteNotCountedAsDeleted: a pass sends the DELETE of a
// finished delete again where a server still holds its disabled version.
// A DELETE the servers refuse (allow_delete false) deleted nothing: the
// pass must not report it as deleted.
func TestRefusedDeleteNotCountedAsDeleted(t *testing.T) {
	t.Parallel()
	env, d, _ := deletedWithoutDelete(t)
	// Started again, the domain has not seen the servers refuse a DELETE.
	d.stop()
	d = newDomain(t, env, nil)
	defer d.stop()
	rep, err := d.svc.Reconcile(context.Background(), api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 0 {
		t.Errorf("the pass reports %d deleted; the servers refused the DELETE", rep.Deleted)
	}
}

// TestDeleteSentAgainOnceServersAllowDeletes: the servers refused a
// DELETE (allow_delete false), so the disabled version stayed on them.
// The operator then turns allow_delete on and restarts them. The next
// passes must send the DELETE again and take the account off the
// servers; the service, which noted that the servers refuse deletes,
// must not go on taking that for true.
func TestDeleteSentAgainOnceServersAllowDeletes(t *testing.T) {
	t.Parallel()
	env, d, pub := deletedWithoutDelete(t)
	defer d.stop()
	conf, err := os.ReadFile(env.Init.ServerConf)
	if err != nil {
		t.Fatal(err)
	}
	on := strings.Replace(string(conf), "allow_delete: false", "allow_delete: true", 1)
	if on == string(conf) {
		t.Fatal("the server config has no allow_delete: false")
	}
	if err := os.WriteFile(env.Init.ServerConf, []byte(on), 0o644); err != nil {
		t.Fatal(err)
	}
	env.Restart(t)
	waitUp(t, d)
	ctx := context.Background()
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, cp := range d.lookupAll(t, pub) {
		if cp != "" {
			t.Errorf("a server still holds the deleted account, which it now allows to delete")
		}
	}
}

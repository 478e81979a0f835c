package provision_test

import (
	"context"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// deletedWithoutDelete makes an account on a deployment whose servers do
// not allow deletes (allow_delete false) and deletes it: the disabled
// version stays on the servers as the end state. It returns the
// deployment's domain, stopped and started again, so that it has not seen
// the servers refuse a DELETE yet, as after a restart.
func deletedWithoutDelete(t *testing.T) *domain {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil || rep.Phase != "deleted" {
		t.Fatalf("delete: %+v, %v", rep, err)
	}
	d.stop()
	d = newDomain(t, env, nil)
	t.Cleanup(d.stop)
	return d
}

// TestRefusedDeleteNotCountedAsDeleted: a pass sends the DELETE of a
// finished delete again where a server still holds its disabled version.
// A DELETE the servers refuse (allow_delete false) deleted nothing: the
// pass must not report it as deleted.
func TestRefusedDeleteNotCountedAsDeleted(t *testing.T) {
	d := deletedWithoutDelete(t)
	rep, err := d.svc.Reconcile(context.Background(), api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 0 {
		t.Errorf("the pass reports %d deleted; the servers refused the DELETE", rep.Deleted)
	}
}

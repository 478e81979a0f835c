package provision_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestTombstoneOfACreateRefusedAsFullFinishes: with several instances on
// one bucket a create whose push failed is taken back as a tombstone. When
// the servers refused the push because their resolver is full (its
// limit reached), no server holds the account, and every push of its
// disabled version is refused the same way, as a new account. The
// tombstone must still finish (nothing is on the servers to disable):
// kept disabled, every pass pushed it again and counted it failed, for
// good.
func TestTombstoneOfACreateRefusedAsFullFinishes(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{ResolverLimit: 4})
	svc, st := kvDomain(t, env, nil)
	ctx := context.Background()
	var refused string
	for i := range 8 {
		_, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("a%d", i)})
		if err != nil {
			t.Logf("create a%d: %v", i, err)
			refused = fmt.Sprintf("a%d", i)
			break
		}
	}
	if refused == "" {
		t.Fatal("the resolver never filled up")
	}
	for i := range 2 {
		rep, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d: %+v", i, rep)
		if i == 1 && rep.Failed != 0 {
			t.Errorf("pass %d failed %d accounts; the refused create's tombstone should have finished", i, rep.Failed)
		}
	}
	all, err := st.Accounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Name == refused && a.Phase != provision.PhaseDeleted {
			t.Errorf("the refused create %s is %s in the store; want its delete finished", a.PublicKey, a.Phase)
		}
	}
}

package provision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestCutImportsWithAnUnreadableRecord: while one account record in the
// KV store could not be read, an exporter's delete listed no import it
// cut off, not even those of readable accounts, and said only that the
// accounts could not be read. It lists the readable accounts' imports,
// and says that the records that cannot be read are left out.
func TestCutImportsWithAnUnreadableRecord(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	svc, st := kvDomainOf(t, env, "a", nil)
	ctx := context.Background()
	alpha := createAlpha(t, svc)
	imports := alphaEvents(alpha.Account.PublicKey)
	var importers []string
	for _, name := range []string{"beta", "gamma"} {
		rep, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Imports: imports})
		if err != nil {
			t.Fatal(err)
		}
		importers = append(importers, rep.Account.PublicKey)
	}
	rev := env.BucketPut(t, "acct."+importers[1], []byte("{damaged"))
	if err := st.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	del, err := svc.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.CutImports) != 1 || del.CutImports[0].Account != importers[0] {
		t.Errorf("alpha's delete with gamma's record damaged cut %+v; want beta's import named", del.CutImports)
	}
	if !strings.Contains(del.CutImportsIncomplete, "1 account record(s) cannot be read") {
		t.Errorf("alpha's delete with gamma's record damaged: cut_imports_incomplete %q; want it to say 1 record cannot be read", del.CutImportsIncomplete)
	}
}

package provision_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestEnsureSelfExportOverAnOlderOrOverlappingExport: the service's own
// account already exports a service subject that holds the self-service
// subjects. EnsureSelfExport added its export beside it, and the JWT was
// refused as invalid ("already exports"): the service refused to start
// for good, with a message that did not say what to do. The self-service
// export in an older form (its subject, without the account token bound)
// is the service's own: it is replaced. An operator's export that
// overlaps it (prov.>) is not the service's to remove: the start is
// refused naming it and what to do, and nothing is pushed.
func TestEnsureSelfExportOverAnOlderOrOverlappingExport(t *testing.T) {
	t.Parallel()
	want := api.SelfExport("")
	for _, tc := range []struct {
		name string
		ex   *jwt.Export
	}{
		{"older self-service export", &jwt.Export{Name: api.SelfServiceName, Subject: want.Subject, Type: jwt.Service}},
		{"operator's prov.>", &jwt.Export{Name: "ops", Subject: "prov.>", Type: jwt.Service}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := provtest.Deployment(t, bootstrap.Options{})
			ctx := context.Background()
			pub := env.Init.ServiceAccount
			base := newDomain(t, env, nil)
			c := mustClaims(t, lookupAll(t, base.rc, pub)[0])
			c.Exports = jwt.Exports{tc.ex}
			before, err := c.Encode(base.op.Signer)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := base.rc.Update(ctx, before); err != nil {
				t.Fatal(err)
			}
			base.stop()
			time.Sleep(1100 * time.Millisecond) // a new version's iat is a second later
			d := newDomain(t, env, nil, func(c *provision.Config) { c.ServiceAccount = pub })
			err = d.svc.EnsureSelfExport(ctx)
			if tc.ex.Name != api.SelfServiceName {
				if err == nil || !strings.Contains(err.Error(), `"prov.>"`) || !strings.Contains(err.Error(), "remove or narrow") {
					t.Errorf("EnsureSelfExport beside an operator's %s export: %v, want a refusal naming it and what to do", tc.ex.Subject, err)
				}
				if cp := lookupAll(t, d.rc, pub)[0]; cp != before {
					t.Errorf("EnsureSelfExport refused, yet the server's copy changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureSelfExport over the self-service export without its account token: %v", err)
			}
			got := mustClaims(t, lookupAll(t, d.rc, pub)[0])
			if len(got.Exports) != 1 || got.Exports[0].AccountTokenPosition != want.AccountTokenPosition {
				t.Errorf("the server's copy exports %s, want the self-service export alone, with its account token", fmt.Sprint(got.Exports))
			}
		})
	}
}

package provision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestUntrustedSignerNamedPastAServerThatRefusesVarz: one server answering
// VARZ with an error threw away every other server's answer, so an
// instance whose operator signing key the servers do not trust had its
// problem neither named in prov.status nor logged, pass after pass, for as
// long as that one server kept refusing. The servers that answered count,
// as when a server does not answer in time.
func TestUntrustedSignerNamedPastAServerThatRefusesVarz(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()

	refusingServer(t, env, d, resolver.SubjectServerVarz, "varz request error")

	svc, strayPub := strayInstance(t, d)
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	st, err := svc.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Problem, strayPub) || !strings.Contains(st.Problem, env.Server.Name()) {
		t.Errorf("status of an instance whose key the servers do not trust, beside a server that refuses VARZ: problem %q, want the key and the server named", st.Problem)
	}
	if strings.Contains(st.Problem, "fake") {
		t.Errorf("status names the server that refused VARZ as not trusting the key: %q", st.Problem)
	}
}

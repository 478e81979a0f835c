package provision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestUntrustedSignerIsNamed: an instance that signs with an operator
// signing key the servers' operator JWT does not list (one left on the
// old key after `operator remove-signing-key`) has every push answered 200
// and every account it pushes made unusable, without an error anywhere.
// A reconcile pass now finds it, and prov.status names the servers and
// the key; an instance with a trusted key names nothing.
func TestUntrustedSignerIsNamed(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if st, _ := d.svc.Status(ctx, api.StatusRequest{}); st.Problem != "" {
		t.Fatalf("status with the trusted key: problem %q", st.Problem)
	}

	svc, strayPub := strayInstance(t, d)
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	st, err := svc.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Problem, strayPub) || !strings.Contains(st.Problem, env.Server.Name()) {
		t.Errorf("status of an instance whose key the servers do not trust: problem %q, want the key and the server named", st.Problem)
	}
	if err := svc.SignerProblem(); err == nil {
		t.Error("SignerProblem is nil")
	}
}

// strayInstance is an instance on d's store and resolver client with the
// same operator but a signing key its JWT does not list, and that key's
// public key; it closes when the test ends.
func strayInstance(t *testing.T, d *domain) (*provision.Service, string) {
	t.Helper()
	stray, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	strayPub, _ := stray.PublicKey()
	op := *d.op
	op.Signer, op.SignerKey = stray, strayPub
	svc, err := provision.New(provision.Config{Operator: &op, Store: d.store, Resolver: d.rc, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc, strayPub
}

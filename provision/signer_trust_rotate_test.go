package provision_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// setSigningKeys writes the deployment's operator JWT with keys as its
// signing keys, for the servers started after.
func setSigningKeys(t *testing.T, dir string, keys ...string) {
	t.Helper()
	provtest.EditOperatorJWT(t, dir, func(oc *jwt.OperatorClaims) { oc.SigningKeys = jwt.StringList(keys) })
}

// TestRotateToTrustedKeyClearsSignerProblem: an instance whose pass found
// that the servers do not trust its operator signing key, switched by
// prov.operator.rotate to a key every server trusts, no longer has that
// problem: prov.status (and the health endpoint) kept naming the old key,
// which it no longer signs with, until the next pass.
func TestRotateToTrustedKeyClearsSignerProblem(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	ctx := context.Background()

	// A first rotation to B, so that the system account and the
	// service's own are signed by a key the servers keep trusting.
	keyB := nextSigningKey(t, env)
	loadB := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyB)
	}
	a := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator = loadB })
	waitUp(t, a)
	keyA := a.op.SignerKey
	if _, err := a.svc.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil {
		t.Fatal(err)
	}
	opB, err := loadB()
	if err != nil {
		t.Fatal(err)
	}
	a.stop()

	// An instance on A, configured with a next key C.
	keyC := addSigningKey(t, env.Dir)
	loadC := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyC)
	}
	opC, err := loadC()
	if err != nil {
		t.Fatal(err)
	}
	s := newDomain(t, env, nil, func(c *provision.Config) { c.NextOperator = loadC })
	defer s.stop()

	// The servers trust B only: A is untrusted, C is not yet.
	setSigningKeys(t, env.Dir, opB.SignerKey)
	env.Restart(t)
	waitUp(t, s)
	if _, err := s.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.SignerProblem(); err == nil {
		t.Fatalf("SignerProblem is nil with %s untrusted", keyA)
	}

	// C rolled out; the rotation switches the instance to it.
	setSigningKeys(t, env.Dir, opB.SignerKey, opC.SignerKey)
	env.Restart(t)
	waitUp(t, s)
	if _, err := s.svc.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := s.svc.SignerProblem(); err != nil {
		t.Errorf("after the rotation to %s, which every server trusts: SignerProblem %q", opC.SignerKey, err)
	}
	st, err := s.svc.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Problem != "" {
		t.Errorf("after the rotation: prov.status problem %q", st.Problem)
	}
}

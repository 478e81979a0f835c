package provision_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestSwitchBackWhileAnotherServerRefusesVarz: an instance that switched
// to operator_signing_key_next meets a server that does not trust that
// key (one not known at the switch): every account it signs is unusable
// there, and the pass switches back to the key every server trusts. With
// a third server answering VARZ with an error beside it, the answers that
// did come were thrown away, and the instance went on signing with the
// key the second server does not trust for as long as the third refused.
func TestSwitchBackWhileAnotherServerRefusesVarz(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	opPath := filepath.Join(env.Dir, bootstrap.OperatorJWTFile)
	d := newDomain(t, env, nil, func(c *provision.Config) {
		c.NextOperator = func() (*provision.Operator, error) { return provision.LoadOperator(opPath, keyPath) }
	})
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	if _, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil {
		t.Fatal(err)
	}
	oldOnly(t, env, d)
	refusingServer(t, env, d, resolver.SubjectServerVarz, "monitoring refused")
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	checkOldKey(t, d.svc, d.op, "acme")
}

// oldOnly adds a fake server "old-only" that answers the server ping and
// VARZ trusting the operator with only its first signing key, d.op's, as
// a server still on the operator JWT from before the next key was added.
func oldOnly(t *testing.T, env *provtest.Env, d *domain) {
	t.Helper()
	oc := jwt.NewOperatorClaims(d.op.PublicKey)
	oc.SigningKeys.Add(d.op.SignerKey)
	varz, err := json.Marshal(map[string]any{"server": map[string]string{"name": "old-only", "id": "NOLDONLY"}, "data": map[string]any{"trusted_operators_claim": []any{oc}}})
	if err != nil {
		t.Fatal(err)
	}
	fake := env.Connect(t, provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "old-only", nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		m.Respond([]byte(`{"name":"old-only","host":"127.0.0.1","id":"NOLDONLY"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(resolver.SubjectServerVarz, func(m *nats.Msg) { m.Respond(varz) }); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
}

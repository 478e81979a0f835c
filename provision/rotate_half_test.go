package provision_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRotateOnAnInstanceWithoutTheNextKey: two instances share the bucket;
// the operator set operator_signing_key_next on one and restarted it, not
// the other. prov.operator.rotate goes to either. The one without the key
// refused, telling the operator to make one with `operator
// add-signing-key` (which refuses: a rotation is under way) without
// saying that it is this instance, of several, that lacks it. The
// refusal names the instance and the config to change on every instance,
// and the rotation works once it is set; nothing changed meanwhile.
func TestRotateOnAnInstanceWithoutTheNextKey(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	ctx := context.Background()
	a, _ := kvDomainOf(t, env, "prov-a", nil, func(c *provision.Config) { c.Instance, c.NextOperator = "prov-a", next })
	b, _ := kvDomainOf(t, env, "prov-b", nil, func(c *provision.Config) { c.Instance = "prov-b" })
	created, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.RotateOperator(ctx, api.RotateOperatorRequest{})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("rotate on the instance without the key: %v, want ErrInvalid", err)
	}
	for _, want := range []string{"prov-b", "operator_signing_key_next", "every instance"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("rotate on the instance without the key: %q does not say %q", err, want)
		}
	}
	if got, err := a.GetAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil || got.Account.JWT != created.Account.JWT {
		t.Errorf("the refused rotation changed the account: %v", err)
	}
	if _, err := a.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil {
		t.Fatalf("rotate on the instance with the key: %v", err)
	}
}

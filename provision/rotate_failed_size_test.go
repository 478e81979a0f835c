package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// failingPushes fails every push once armed.
type failingPushes struct {
	provision.Resolver
	armed atomic.Bool
}

func (f *failingPushes) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if f.armed.Load() {
		return nil, errors.New("push refused by the test")
	}
	return f.Resolver.Update(ctx, token)
}

// TestRotateOperatorFailedListFits: prov.operator.rotate's reply listed
// every account whose re-sign failed, with no limit: with a few hundred
// failures at a small max_payload, the rotation was carried out and
// answered 500 "its reply would be over max_payload", and the caller lost
// the list. The list holds as many as prov.reconcile's orphans do, and
// failed_omitted counts the rest (the log names each).
func TestRotateOperatorFailedListFits(t *testing.T) {
	t.Parallel()
	const (
		maxJWT   = 2 << 10 // a reply may carry maxJWT + 4096
		accounts = 40      // 59 bytes each in a list: 2.5 KB with the 2 protected ones, over maxJWT
	)
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	f := &failingPushes{}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { f.Resolver = r; return f },
		func(c *provision.Config) { c.NextOperator, c.MaxJWTSize = next, maxJWT })
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	for i := range accounts {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acct%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	f.armed.Store(true)
	rep, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(rep)
	if len(data) > maxJWT {
		t.Errorf("the rotation's reply is %d bytes with %d failed listed, over %d", len(data), len(rep.Failed), maxJWT)
	}
	if got := len(rep.Failed) + rep.FailedOmitted; got < accounts || rep.Resigned+got != rep.Accounts {
		t.Errorf("%d failed listed, %d left out, %d re-signed of %d; want every one of the %d accounts counted as failed", len(rep.Failed), rep.FailedOmitted, rep.Resigned, rep.Accounts, accounts)
	}
}

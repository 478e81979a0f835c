package provision_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// listSignal tells when the accounts were listed.
type listSignal struct {
	provision.Store
	listed chan struct{}
}

func (l *listSignal) Accounts(ctx context.Context) ([]provision.Account, error) {
	as, err := l.Store.Accounts(ctx)
	select {
	case l.listed <- struct{}{}:
	default:
	}
	return as, err
}

// TestRotationKeepsARevivedAccountsJetStream: an operator rotation lists
// the accounts while a delete's disabled version is being pushed, so it
// lists the tombstone; the push then fails and the delete puts the live
// account back. The rotation re-signed what it read under the lock as a
// tombstone's disabled version, in place: it took the JetStream limits
// and the imports off the live account, stored, and the reconciler pushed
// that version to every server. (A reconcile pass that lists a tombstone
// to re-sign while another instance puts the account back does the same.)
func TestRotationKeepsARevivedAccountsJetStream(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	next := func() (*provision.Operator, error) {
		return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	}
	g := &notSentAfterHold{reached: make(chan string, 1), released: make(chan struct{})}
	ls := &listSignal{listed: make(chan struct{}, 1)}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g }, func(c *provision.Config) {
		c.NextOperator = next
		ls.Store = c.Store
		c.Store = ls
	})
	defer d.stop()
	waitUp(t, d)
	ctx := context.Background()
	mem, unlimited := int64(1<<20), int64(-1)
	g.n.Store(1) // the create's push goes through
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "js",
		Limits: &api.AccountLimits{JetStreamLimits: api.JetStreamLimits{MemStorage: &mem, Streams: &unlimited, Consumer: &unlimited}},
	})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	g.n.Store(0) // the delete's push is held, then not sent
	deleted := make(chan error, 1)
	go func() {
		_, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "js"})
		deleted <- err
	}()
	select {
	case <-g.reached: // the tombstone stored, its push held under the lock
	case <-time.After(10 * time.Second):
		t.Fatal("the delete's push never came")
	}
	for len(ls.listed) > 0 {
		<-ls.listed // a list before the rotation's
	}
	rotated := make(chan error, 1)
	go func() {
		rep, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{})
		if err == nil && len(rep.Failed) > 0 {
			t.Logf("rotation failed for %v", rep.Failed)
		}
		rotated <- err
	}()
	select {
	case <-ls.listed: // the rotation listed the tombstone
	case <-time.After(10 * time.Second):
		t.Fatal("the rotation never listed the accounts")
	}
	close(g.released)
	if err := <-deleted; err == nil {
		t.Fatal("the delete should have failed")
	}
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	a, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Live() {
		t.Fatalf("the failed delete was not put back: phase %s", a.Phase)
	}
	c, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.JetStreamLimits.MemoryStorage != mem {
		t.Errorf("the live account put back lost its JetStream limits to the rotation: %+v", c.Limits.JetStreamLimits)
	}
	if op, err := next(); err != nil || c.Issuer != op.SignerKey {
		t.Errorf("the live account put back is signed by %s after the rotation, want the new key (%v)", c.Issuer, err)
	}
	if _, all := c.Revocations[jwt.All]; all || c.Limits.Conn == 0 {
		t.Errorf("the live account is stored disabled: conn %d, every user revoked %t", c.Limits.Conn, all)
	}
}

package provision_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// quotaGate holds the first listing of an account's users once armed (the
// quota's count of a self-service create, under its lock) until released,
// and tells when the account is read once watching is set.
type quotaGate struct {
	provision.Store
	arm, watch atomic.Bool
	held       chan struct{}
	release    chan struct{}
	read       chan struct{}
}

func (g *quotaGate) Users(ctx context.Context, acct string) ([]provision.User, error) {
	if g.arm.CompareAndSwap(true, false) {
		g.held <- struct{}{}
		<-g.release
	}
	return g.Store.Users(ctx, acct)
}

func (g *quotaGate) Account(ctx context.Context, pub string) (provision.Account, error) {
	a, err := g.Store.Account(ctx, pub)
	if g.watch.CompareAndSwap(true, false) {
		g.read <- struct{}{}
	}
	return a, err
}

// TestSelfServiceQuotaCountsUsersOfNewKeys: the quota's count judged the
// account's users against the version read before the request waited for
// the account's self-service lock. A user that the request ahead of it
// issued with a key newer than that version (an account.rotate between the
// two) looked signed by a key the account does not hold, cut off, and was
// not counted: on one instance, every request queued across a rotation
// passed a full quota. The count reads the account under the lock.
func TestSelfServiceQuotaCountsUsersOfNewKeys(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	g := &quotaGate{held: make(chan struct{}), release: make(chan struct{}), read: make(chan struct{})}
	d := newDomain(t, env, nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		g.Store = c.Store
		c.Store = g
	})
	defer d.stop()
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 1})
	if err != nil {
		t.Fatal(err)
	}
	tenant := provision.Tenant{Account: acc.Account.PublicKey}
	create := func(name string) <-chan error {
		out := make(chan error, 1)
		go func() {
			_, err := d.svc.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: name, Role: "device", PublicKey: newUserKey()})
			out <- err
		}()
		return out
	}
	g.arm.Store(true)
	first := create("d1")
	<-g.held // d1 counts, holding the account's self-service lock
	g.watch.Store(true)
	second := create("d2")
	<-g.read // d2 read the account; it waits for the lock
	if _, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if err := <-first; err != nil {
		t.Fatalf("the first self-service user: %v", err)
	}
	select {
	case err := <-second:
		if !errors.Is(err, provision.ErrForbidden) {
			t.Errorf("a second self-service user past a quota of one, queued across a rotation: %v, want refused (quota)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second create did not end")
	}
}

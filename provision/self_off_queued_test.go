package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestSelfServiceOffStopsQueuedCreates: a self.user.create that read the
// account while self-service was on, then waited for the account's
// self-service lock behind another, went on to issue its user after an
// admin turned self-service off meanwhile: the account read again under
// the lock was taken for the quota only. The checks of selfAccount hold
// under the lock: it is refused (403).
func TestSelfServiceOffStopsQueuedCreates(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	g := &quotaGate{held: make(chan struct{}), release: make(chan struct{}), read: make(chan struct{})}
	d := newDomain(t, env, nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		g.Store = c.Store
		c.Store = g
	})
	defer d.stop()
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 5})
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
	<-g.read // d2 read the account, self-service on; it waits for the lock
	off := false
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", SelfService: &off}); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	<-first
	select {
	case err := <-second:
		if !errors.Is(err, provision.ErrForbidden) {
			t.Errorf("a self-service create queued while self-service was turned off: %v, want refused (403)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second create did not end")
	}
}

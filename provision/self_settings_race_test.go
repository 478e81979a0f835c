package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// readGate holds the first read of an account once armed (a self-service
// create's check of the account, before it waits for the account's
// self-service lock), or with armUsers the first listing of its users (the
// quota's count, under that lock), until released.
type readGate struct {
	provision.Store
	arm, armUsers atomic.Bool
	held          chan struct{}
	release       chan struct{}
}

func (g *readGate) Users(ctx context.Context, acct string) ([]provision.User, error) {
	if g.armUsers.CompareAndSwap(true, false) {
		g.held <- struct{}{}
		<-g.release
	}
	return g.Store.Users(ctx, acct)
}

func (g *readGate) Account(ctx context.Context, pub string) (provision.Account, error) {
	a, err := g.Store.Account(ctx, pub)
	if g.arm.CompareAndSwap(true, false) {
		g.held <- struct{}{}
		<-g.release
	}
	return a, err
}

// TestSelfCreateHeedsSettingsChangedMeanwhile: a self-service create checked
// self_service, self_service_role and the quota on the account it read
// before it waited for the account's self-service lock, and not again on
// the account it read under it. A create in flight while an account.update
// turned self-service off, set a self_service_role the caller is not in, or
// lowered the quota issued its user after the update had replied, under the
// settings the update replaced. The update waits for the creates in flight,
// and a create checks the settings under the lock.
func TestSelfCreateHeedsSettingsChangedMeanwhile(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	g := &readGate{}
	d := newDomain(t, env, nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		g.Store = c.Store
		c.Store = g
	})
	defer d.stop()
	ctx := context.Background()
	on, off, one, enroller := true, false, 1, "enroller"
	for _, tc := range []struct {
		name   string
		update api.UpdateAccountRequest
		count  bool // hold the create in its quota's count
	}{
		{"self_service off", api.UpdateAccountRequest{SelfService: &off}, false},
		{"self_service_role set", api.UpdateAccountRequest{SelfServiceRole: &enroller}, false},
		{"quota lowered", api.UpdateAccountRequest{SelfServiceQuota: &one}, false},
		{"quota lowered while counting", api.UpdateAccountRequest{SelfServiceQuota: &one}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "acme-" + strings.ReplaceAll(tc.name, " ", "-")
			acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Roles: map[string]*api.Role{"device": {}, "enroller": {}}, SelfService: on})
			if err != nil {
				t.Fatal(err)
			}
			tenant := provision.Tenant{Account: acc.Account.PublicKey}
			// One self-service user already: a quota of one is full.
			if _, err := d.svc.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d0", Role: "device", PublicKey: newUserKey()}); err != nil {
				t.Fatal(err)
			}
			g.held, g.release = make(chan struct{}), make(chan struct{})
			if tc.count {
				// The count runs only under a quota: one it will
				// have room under.
				five := 5
				if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: name, SelfServiceQuota: &five}); err != nil {
					t.Fatal(err)
				}
				g.armUsers.Store(true)
			} else {
				g.arm.Store(true)
			}
			created := make(chan error, 1)
			go func() {
				_, err := d.svc.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: newUserKey()})
				created <- err
			}()
			<-g.held // the create checked the account and goes on
			tc.update.Account = name
			updated := make(chan error, 1)
			go func() {
				_, err := d.svc.UpdateAccount(ctx, tc.update)
				updated <- err
			}()
			// The update replies before the create goes on, or waits
			// for it: either way the create must not issue under the
			// old settings once the update replied.
			var replied bool
			select {
			case err := <-updated:
				if err != nil {
					t.Fatal(err)
				}
				replied = true
			case <-time.After(3 * time.Second):
			}
			close(g.release)
			select {
			case err = <-created:
			case <-time.After(10 * time.Second):
				t.Fatal("the create did not end")
			}
			if !replied {
				if uerr := <-updated; uerr != nil {
					t.Fatal(uerr)
				}
			}
			if replied && !errors.Is(err, provision.ErrForbidden) {
				t.Errorf("a self-service create in flight across an account.update (%s) that replied first: %v, want refused (403)", tc.name, err)
			}
			users, lerr := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: name})
			if lerr != nil {
				t.Fatal(lerr)
			}
			if err == nil && users.Total > 1 {
				// Issued before the update: fine only if the update
				// waited for it.
				if replied {
					t.Errorf("d1 issued after the update replied")
				}
			}
		})
	}
}

// laggingMirror is a KV store whose mirror, once armed, holds the first
// account it reads until released and then keeps answering with it: an
// instance whose watcher has not yet delivered another instance's change.
// Reads of the bucket's latest pass.
type laggingMirror struct {
	*kvstore.Store
	arm     atomic.Bool
	stale   atomic.Pointer[provision.Account]
	held    chan struct{}
	release chan struct{}
}

func (l *laggingMirror) Account(ctx context.Context, pub string) (provision.Account, error) {
	if a := l.stale.Load(); a != nil && a.PublicKey == pub {
		return *a, nil
	}
	a, err := l.Store.Account(ctx, pub)
	if err == nil && l.arm.CompareAndSwap(true, false) {
		l.stale.Store(&a)
		l.held <- struct{}{}
		<-l.release
	}
	return a, err
}

// TestSelfCreateHeedsSettingsChangedOnAnotherInstance: a self-service
// create checked the settings on its instance's mirror of the bucket only.
// Another instance's account.update that turned self-service off and
// replied, not yet in that mirror, let the create issue under the old
// settings. The create checks them again on the bucket's latest version,
// under its lock.
func TestSelfCreateHeedsSettingsChangedOnAnotherInstance(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	lag := &laggingMirror{held: make(chan struct{}), release: make(chan struct{})}
	a, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		lag.Store = c.Store.(*kvstore.Store)
		c.Store = lag
	})
	b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
	ctx := context.Background()
	acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, err := lag.Store.Account(ctx, pub); err == nil && got.Settings.SelfService {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("instance a never saw the account")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lag.arm.Store(true)
	created := make(chan error, 1)
	go func() {
		_, err := a.SelfCreateUser(ctx, provision.Tenant{Account: pub}, api.SelfCreateUserRequest{Name: "d1", Role: "device", PublicKey: newUserKey()})
		created <- err
	}()
	<-lag.held
	off := false
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", SelfService: &off}); err != nil {
		t.Fatal(err)
	}
	close(lag.release)
	select {
	case err := <-created:
		if !errors.Is(err, provision.ErrForbidden) {
			t.Errorf("a self-service create on instance a, after instance b's account.update turned self-service off and replied: %v, want refused (403)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the create did not end")
	}
}

// TestSelfRevokeHeedsSettingsChangedMeanwhile: a tenant's self.user.revoke
// checked self_service and self_service_role on the account it read first,
// and not on the version its revocation went into: a revoke in flight
// while an account.update turned self-service off, or set a
// self_service_role the caller is not in, revoked the user after the
// update replied. The revocation checks the settings of the version it
// joins.
func TestSelfRevokeHeedsSettingsChangedMeanwhile(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	g := &readGate{}
	d := newDomain(t, env, nil, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		g.Store = c.Store
		c.Store = g
	})
	defer d.stop()
	ctx := context.Background()
	off, enroller := false, "enroller"
	for _, tc := range []struct {
		name   string
		update api.UpdateAccountRequest
	}{
		{"self_service off", api.UpdateAccountRequest{SelfService: &off}},
		{"self_service_role set", api.UpdateAccountRequest{SelfServiceRole: &enroller}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "acme-" + strings.ReplaceAll(tc.name, " ", "-")
			acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Roles: map[string]*api.Role{"device": {}, "enroller": {}}, SelfService: true})
			if err != nil {
				t.Fatal(err)
			}
			tenant := provision.Tenant{Account: acc.Account.PublicKey}
			key := newUserKey()
			if _, err := d.svc.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d0", Role: "device", PublicKey: key}); err != nil {
				t.Fatal(err)
			}
			g.held, g.release = make(chan struct{}), make(chan struct{})
			g.arm.Store(true)
			revoked := make(chan error, 1)
			go func() {
				_, err := d.svc.SelfRevokeUser(ctx, tenant, api.SelfRevokeUserRequest{User: key})
				revoked <- err
			}()
			<-g.held // the revoke checked the account and goes on
			tc.update.Account = name
			if _, err := d.svc.UpdateAccount(ctx, tc.update); err != nil {
				t.Fatal(err)
			}
			close(g.release)
			select {
			case err = <-revoked:
			case <-time.After(10 * time.Second):
				t.Fatal("the revoke did not end")
			}
			if !errors.Is(err, provision.ErrForbidden) {
				t.Errorf("a self-service revoke in flight across an account.update (%s) that replied first: %v, want refused (403)", tc.name, err)
			}
			users, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: name})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range users.Users {
				if u.PublicKey == key && u.Revoked {
					t.Errorf("d0 revoked by a tenant after the update (%s) replied", tc.name)
				}
			}
		})
	}
}

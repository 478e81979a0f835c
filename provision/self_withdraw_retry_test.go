package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// refuseWhileArmed refuses every push while armed, as servers that refuse
// a JWT would.
type refuseWhileArmed struct {
	provision.Resolver
	armed atomic.Bool
}

func (r *refuseWhileArmed) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.armed.Load() {
		return provision.PushResult{}, &provision.RefusedError{Reason: "refused while armed"}
	}
	return r.Resolver.Update(ctx, token)
}

// eventLog keeps the events a service publishes.
type eventLog struct {
	mu     sync.Mutex
	events []api.Event
}

func (l *eventLog) Publish(_ context.Context, e api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) has(typ, user, result string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Type == typ && e.User == user && e.Result == result {
			return true
		}
	}
	return false
}

// TestSelfCreateWithdrawalRetried: a self-service create refused after its
// user's record was stored (another instance's account.update lowered the
// quota meanwhile) revokes its user; when that revocation's push failed,
// the record stayed active for good, holding the user's name and a unit of
// the quota, though its JWT was never handed out. The withdrawal is tried
// again in the background until it lands; Close does not wait for one that
// keeps failing.
func TestSelfCreateWithdrawalRetried(t *testing.T) {
	t.Parallel()
	t.Run("lands", func(t *testing.T) {
		ev := &eventLog{}
		a, r, _, pub, late, _ := refusedAfterRecord(t, ev)
		r.armed.Store(false)
		waitWithdrawn(t, a, pub, late)
		// Published just after the revocation landed.
		deadline := time.Now().Add(2 * time.Second)
		for !ev.has(api.EventUserCreated, late, "refused: self-service settings changed meanwhile") {
			if time.Now().After(deadline) {
				t.Fatal("no event reports the create refused once its user was revoked")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("answer", func(t *testing.T) {
		// README: refused then, 403, whether or not its revocation
		// landed at the first try; the servers' refusal of the
		// revocation is not the tenant's answer.
		_, _, _, _, _, err := refusedAfterRecord(t, nil)
		if !errors.Is(err, provision.ErrForbidden) {
			t.Errorf("the create refused after its record, whose withdrawal failed, answered %v; want ErrForbidden (403)", err)
		}
		var refused *provision.RefusedError
		if errors.As(err, &refused) {
			t.Errorf("the create's answer carries the revocation's push error as its own (a 502): %v", err)
		}
		// Nor its text: what the servers or the store said goes to the
		// log (a 403's description goes to the tenant as it is).
		if err != nil && strings.Contains(err.Error(), "refused while armed") {
			t.Errorf("the tenant's answer carries the revocation's own failure, for the log only: %v", err)
		}
	})
	t.Run("restart", func(t *testing.T) {
		// The withdrawal lived in the instance's memory alone: stopped
		// (or killed) before its retry landed, the instance left the
		// user active in the store for good, counted by the quota and
		// holding its name, though its JWT was never handed out. The
		// store holds the revocation now, for any instance's reconciler
		// to push.
		a, r, b, pub, late, _ := refusedAfterRecord(t, nil)
		a.Close()
		r.armed.Store(false)
		if _, err := b.Reconcile(context.Background(), api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
		waitWithdrawn(t, b, pub, late)
	})
	t.Run("close", func(t *testing.T) {
		a, _, _, _, _, _ := refusedAfterRecord(t, nil)
		closed := make(chan struct{})
		go func() { a.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Fatal("Close waited for a withdrawal that keeps failing")
		}
	})
}

// refusedAfterRecord makes a self-service create on instance a that is
// refused after its record was stored, and whose withdrawal's push is
// refused: a's servers refuse pushes until r is disarmed. b is the
// instance whose account.update refused it.
func refusedAfterRecord(t *testing.T, events provision.Events) (a *provision.Service, r *refuseWhileArmed, b *provision.Service, pub, late string, createErr error) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	p := &pauseAdd{held: make(chan struct{}), release: make(chan struct{})}
	a, _ = kvDomainOf(t, env, "a", func(rc provision.Resolver) provision.Resolver {
		r = &refuseWhileArmed{Resolver: rc}
		return r
	}, func(c *provision.Config) {
		c.ServiceAccount = env.Init.ServiceAccount
		if events != nil {
			c.Events = events
		}
		p.Store = c.Store.(*kvstore.Store)
		c.Store = p
	})
	b, _ = kvDomainOf(t, env, "b", nil, func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount })
	ctx := context.Background()
	acc, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 3})
	if err != nil {
		t.Fatal(err)
	}
	pub = acc.Account.PublicKey
	tenant := provision.Tenant{Account: pub}
	if _, err := a.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "early", Role: "device", PublicKey: newUserKey()}); err != nil {
		t.Fatal(err)
	}
	p.arm.Store(true)
	created := make(chan error, 1)
	late = newUserKey()
	go func() {
		_, err := a.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "late", Role: "device", PublicKey: late})
		created <- err
	}()
	select {
	case <-p.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the create never reached its record")
	}
	one := 1
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, SelfServiceQuota: &one}); err != nil {
		t.Fatal(err)
	}
	r.armed.Store(true)
	close(p.release)
	select {
	case createErr = <-created:
		if createErr == nil {
			t.Fatal("the create, refused after its record, succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the create did not end")
	}
	return a, r, b, pub, late, createErr
}

// waitWithdrawn waits for the withdrawn user late to be revoked, in the
// account's JWT, and the early one alone counted active.
func waitWithdrawn(t *testing.T, a *provision.Service, pub, late string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		users, err := a.ListUsers(ctx, api.ListUsersRequest{Account: pub})
		if err != nil {
			t.Fatal(err)
		}
		active := 0
		revoked := false
		for _, us := range users.Users {
			if !us.Revoked {
				active++
			}
			if us.Name == "late" && us.Revoked {
				revoked = true
			}
		}
		if revoked && active == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the withdrawn user %q is still active 10 s after the servers took pushes again (%d active users, want 1)", "late", active)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got, err := a.GetAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mustClaims(t, got.Account.JWT).Revocations[late]; !ok {
		t.Errorf("the account's JWT does not revoke the withdrawn user")
	}
}

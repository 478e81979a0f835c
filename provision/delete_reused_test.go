package provision_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// heldDeletePush holds the push of one account's disabled version until
// released, then fails it as never sent (the connection to NATS lost);
// later pushes go through.
type heldDeletePush struct {
	provision.Resolver
	pub      string
	reached  chan struct{}
	released chan struct{}
	once     sync.Once
}

func (h *heldDeletePush) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if c, err := jwt.DecodeAccountClaims(token); err == nil && c.Subject == h.pub && c.Limits.Conn == 0 {
		first := false
		h.once.Do(func() { first = true; close(h.reached) })
		if first {
			<-h.released
			return provision.PushResult{}, provision.ErrNotSent
		}
	}
	return h.Resolver.Update(ctx, token)
}

// TestDeleteWhoseNameWasReusedStands: a delete frees the account's name
// as soon as its tombstone is stored, and a create takes the name while
// the push of the disabled version is under way. That push fails; the
// account cannot be put back (its name is taken), so the tombstone stays
// and the reconciler finishes the delete. The caller was told the delete
// failed, and a retry of "delete acme" deleted the new account.
func TestDeleteWhoseNameWasReusedStands(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	h := &heldDeletePush{reached: make(chan struct{}), released: make(chan struct{})}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { h.Resolver = r; return h })
	defer d.stop()
	ctx := context.Background()
	old, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	h.pub = old.Account.PublicKey
	type result struct {
		rep *api.DeleteAccountReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
		done <- result{rep, err}
	}()
	select {
	case <-h.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the delete never reached its push")
	}
	reused, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatalf("create of the freed name: %v", err)
	}
	close(h.released)
	r := <-done
	if a, err := d.store.Account(ctx, old.Account.PublicKey); err != nil || a.Live() {
		t.Fatalf("the old account in the store: %+v, %v; want its tombstone", a.Phase, err)
	}
	if r.err != nil {
		t.Fatalf("the delete, which stands (its tombstone is in the store and the reconciler finishes it), was reported failed: %v", r.err)
	}
	if r.rep.Deleted != old.Account.PublicKey || r.rep.Phase != string(provision.PhaseDisabled) || len(r.rep.Waiting) == 0 {
		t.Errorf("reply %+v; want the old key, phase disabled and the servers waited for", r.rep)
	}
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, cp := range d.lookupAll(t, old.Account.PublicKey) {
		if cp != "" {
			t.Error("a server still holds the deleted account after a pass")
		}
	}
	got, err := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil || got.Account.PublicKey != reused.Account.PublicKey {
		t.Errorf("acme is %+v, %v; want the new account %s", got, err, reused.Account.PublicKey)
	}
}

// TestDeleteWhoseNameWasReusedStandsOnKV is the same with two instances on
// one bucket: the name is taken on the other instance while the delete's
// push is under way.
func TestDeleteWhoseNameWasReusedStandsOnKV(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	h := &heldDeletePush{reached: make(chan struct{}), released: make(chan struct{})}
	a, st := kvDomainOf(t, env, "a", func(r provision.Resolver) provision.Resolver { h.Resolver = r; return h })
	b, _ := kvDomainOf(t, env, "b", nil)
	ctx := context.Background()
	old, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	h.pub = old.Account.PublicKey
	type result struct {
		rep *api.DeleteAccountReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := a.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
		done <- result{rep, err}
	}()
	select {
	case <-h.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the delete never reached its push")
	}
	var reused *api.AccountReply
	for until := time.Now().Add(5 * time.Second); ; {
		// The other instance's mirror may not have seen the tombstone yet.
		if reused, err = b.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err == nil || time.Now().After(until) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create of the freed name on the other instance: %v", err)
	}
	close(h.released)
	r := <-done
	if cur, err := st.AccountLatest(ctx, old.Account.PublicKey); err != nil || cur.Live() {
		t.Fatalf("the old account in the store: %+v, %v; want its tombstone", cur.Phase, err)
	}
	if r.err != nil {
		t.Fatalf("the delete, which stands, was reported failed: %v", r.err)
	}
	if r.rep.Phase != string(provision.PhaseDisabled) {
		t.Errorf("reply %+v; want phase disabled", r.rep)
	}
	got, err := b.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil || got.Account.PublicKey != reused.Account.PublicKey {
		t.Errorf("acme is %+v, %v; want the new account %s", got, err, reused.Account.PublicKey)
	}
}

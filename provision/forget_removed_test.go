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

// TestAccountRemovedByAPeerForgotten: instance A creates acme (it
// remembers which servers confirmed it); instance B, on the same KV
// store, deletes it and, past the retention, drops its tombstone. A's
// next pass finds acme nowhere in the store: what A remembered of it on
// the servers was kept for as long as A ran, a leak of one entry per
// server for each account another instance removed.
func TestAccountRemovedByAPeerForgotten(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, st := kvDomain(t, env, nil)
	b, _ := kvDomainOf(t, env, "", nil, func(cfg *provision.Config) { cfg.TombstoneRetention = time.Nanosecond })
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	if !a.Remembers(pub) {
		t.Fatal("A remembers nothing of the account it created")
	}
	waitAccount(t, b, pub)
	if _, err := b.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AccountLatest(ctx, pub); errors.Is(err, provision.ErrNotFound) {
			break
		}
	}
	if _, err := st.AccountLatest(ctx, pub); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("B did not drop the tombstone (%v)", err)
	}
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if a.Remembers(pub) {
		t.Errorf("A still remembers acme on the servers after a pass that found it gone from the store")
	}
	if a.Caches(pub) {
		t.Errorf("A still holds acme's signing keys after a pass that found it gone from the store")
	}
}

// neverLeader never grants the reconciler lease: another instance holds
// it.
type neverLeader struct{}

func (neverLeader) TryLease(context.Context, string, time.Duration) (bool, error) { return false, nil }

// TestAccountRemovedByTheLeaderForgottenByAnotherInstance: instance A,
// which never holds the reconciler lease, creates acme; instance B
// deletes it and drops its tombstone. A's passes, skipped for the lease,
// never looked at the store: what A remembered of acme on the servers
// was kept for as long as it ran, on every instance but the leader.
func TestAccountRemovedByTheLeaderForgottenByAnotherInstance(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, st := kvDomainOf(t, env, "", nil, func(cfg *provision.Config) { cfg.Leader = neverLeader{} })
	b, _ := kvDomainOf(t, env, "", nil, func(cfg *provision.Config) { cfg.TombstoneRetention = time.Nanosecond })
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	waitAccount(t, b, pub)
	if _, err := b.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.AccountLatest(ctx, pub); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("B did not drop the tombstone (%v)", err)
	}
	// A's mirror catches up with B's removal.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := st.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := a.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Skipped == "" {
		t.Fatal("A's pass was not skipped for the lease")
	}
	if a.Remembers(pub) {
		t.Errorf("A still remembers acme on the servers after a pass once B removed it from the store")
	}
	if a.Caches(pub) {
		t.Errorf("A still holds acme's signing keys after a pass once B removed it from the store")
	}
}

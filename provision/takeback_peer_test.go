package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// fullTombstone fails the first write of a tombstone as a full bucket
// does: with ErrFull, having stored nothing.
type fullTombstone struct {
	*kvstore.Store
	armed atomic.Bool
}

func (f *fullTombstone) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if !a.Live() && f.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("kvstore: update account %s: %w: the service account's JetStream storage has no room", a.PublicKey, provision.ErrFull)
	}
	return f.Store.UpdateAccount(ctx, a, rev)
}

// TestFailedCreateNotTakenBackIsPushedByAPeer: on the KV store, instance
// A's create is refused by every server and its take-back, the tombstone,
// is refused by the full bucket. A's caller is told 504 in doubt: the
// failed create is live in the store, remembered as failed in A's memory
// only, and instance B's reconciler, which knows nothing of it, pushes it
// live (as README says) until A's next pass takes it back.
func TestFailedCreateNotTakenBackIsPushedByAPeer(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	ft := &fullTombstone{Store: st}
	ft.armed.Store(true)
	rc := rawResolver(t, env)
	r := &refuseOnce{Resolver: rc}
	r.armed.Store(true)
	a := domainOver(t, env, ft, r)
	ctx := context.Background()
	_, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if errors.Is(err, provision.ErrRefused) || !errors.Is(err, provision.ErrInDoubt) {
		t.Fatalf("the create's caller was told %v, want in doubt", err)
	}
	if ft.armed.Load() {
		t.Fatal("no tombstone was written")
	}
	acc, err := st.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.PublicKey
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if !heldLive(t, lookupAll(t, rc, pub)) {
		t.Errorf("B's pass did not push the failed create live")
	}
	if _, err := a.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if cur, err := st.AccountLatest(ctx, pub); err == nil && cur.Live() {
		t.Errorf("A's pass did not take the failed create back")
	}
	noLiveCopy(t, lookupAll(t, rc, pub), "the failed create is live on a server after A's pass")
}

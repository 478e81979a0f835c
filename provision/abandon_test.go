package provision_test

import (
	"context"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestAbandonedCreateChangedByPeer: instance A stores a new account and its
// push is held, then fails as never sent. Meanwhile instance B, on the same
// KV store, changes the account (stored and pushed). A's create fails, and
// its clean-up finds the record changed (ErrStale): it must take the
// account back on top of B's version, not give up and leave a failed
// create live on the servers and in the store for good.
func TestAbandonedCreateChangedByPeer(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	g := &notSentAfterHold{reached: make(chan string, 1), released: make(chan struct{})}
	a, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	created := make(chan error, 1)
	go func() {
		_, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
		created <- err
	}()
	token := <-g.reached // A stored the account; its push is under way
	pub := mustClaims(t, token).Subject
	waitAccount(t, b, pub)
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("by b")}); err != nil {
		t.Fatal(err)
	}
	close(g.released)
	if err := <-created; err == nil {
		t.Fatal("the create should have failed")
	}
	// A pass of either reconciler does not change the outcome.
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	cur, err := st.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Live() {
		t.Errorf("the store holds the failed create live (%q), A's caller was told it failed", mustClaims(t, cur.JWT).Description)
	}
	copies, err := rawResolver(t, env).LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		if cp == "" {
			continue
		}
		if _, off := mustClaims(t, cp).Revocations[jwt.All]; !off {
			t.Errorf("the failed create is live on a server (%q)", mustClaims(t, cp).Description)
		}
	}
}

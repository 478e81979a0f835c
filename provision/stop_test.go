package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestStopCutsAPassInAResign: the reconcile pass makes a new version of an
// account (here to prune the revocation of a user whose JWT expired) and
// its push hangs (the servers' answers lost). A stop ends Run and then
// Close: Run waited for the change, and Close for its worker, as long as
// the change's own deadline (2 minutes), past any container's grace. Now
// Run returns when its context ends and Close cuts what is left after a
// few seconds; a start on the same store then leaves the servers holding
// the store's version.
func TestStopCutsAPassInAResign(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	b := &blockingResolver{armed: make(chan struct{}), reached: make(chan struct{}), released: make(chan struct{})}
	short := func(c *provision.Config) { c.RevocationMargin = time.Millisecond }
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { b.Resolver = r; return b }, short)
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	_, uc := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "brief", ExpiresIn: "1s"})
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: uc.Subject}); err != nil {
		t.Fatal(err)
	}
	// The JWT expires; its revocation can go once a whole second has
	// passed its exp (a Unix second, rounded up at issue): a fixed 2.1 s
	// from here left the pass in exp's second when the issue came early
	// in the second after the create's (the revoke then had no second to
	// wait for), and the pass pushed nothing.
	time.Sleep(time.Until(time.Unix(uc.Expires+1, 0).Add(50 * time.Millisecond)))

	close(b.armed)
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.svc.Run(runCtx)
	}()
	select {
	case <-b.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the pass did not push a new version of acme")
	}

	start := time.Now()
	stopRun()
	select {
	case <-ran:
	case <-time.After(2 * time.Second):
		t.Fatalf("Run still at work %s after its context ended, waiting for the pass's re-sign", time.Since(start))
	}
	closed := make(chan struct{})
	go func() {
		d.svc.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(6 * time.Second):
		t.Fatalf("Close still waiting %s after the stop began, for a re-sign whose push hangs", time.Since(start))
	}
	d.rc.Close()
	d.store.Close()

	next := newDomain(t, env, nil)
	defer next.stop()
	if _, err := next.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	a, err := next.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for i, got := range next.lookupAll(t, a.PublicKey) {
		if got != a.JWT {
			t.Errorf("after the next start's pass, server %d holds %.40q, the store %.40q", i, got, a.JWT)
		}
	}
}

// TestCloseTwice: a second Close (a deferred one beside a cleanup's)
// returns at once. It panicked: the key pools' channels were closed again.
func TestCloseTwice(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	if _, err := d.svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	d.svc.Close()
	d.svc.Close()
	d.rc.Close()
	d.store.Close()
}

package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
)

// TestExpiredAccountDroppedByTheServersIsNotPushedAgain: a full resolver
// removes an account JWT from its store once the JWT's exp has passed (it
// checks once a minute), and answers a LOOKUP of it empty. The pass took
// that for a server missing the account and pushed the expired version
// again, every pass, for the server to drop it again: README says the
// reconciler does not push an expired account again. A server that drops
// it holds nothing its users could connect with.
func TestExpiredAccountDroppedByTheServersIsNotPushedAgain(t *testing.T) {
	t.Parallel()
	env, d, acc := expiringAccount(t, "brief", "1s")
	ctx := context.Background()
	ac, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	// A whole second past exp, wherever in a second the create came.
	time.Sleep(time.Until(time.Unix(ac.Expires+1, 0).Add(50 * time.Millisecond)))
	// The server's store drops it at its next check, within a minute of
	// its start, and also as it starts, when the store's expiry check
	// first runs after the store has read its directory (if it runs
	// before, only the next one a minute on drops it). Rather than wait a
	// minute, the server and then the service restart, a few times at
	// most. The new instance knows of no confirmation, so its passes
	// LOOKUP the account as the first instance's did for the version the
	// server confirmed.
	dropped := func(limit time.Duration) bool {
		for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
			copies, err := d.rc.LookupAll(ctx, acc.Account.PublicKey)
			if err == nil && len(copies) == 1 && copies[0] == "" {
				return true
			}
			if time.Now().After(deadline) {
				return false
			}
		}
	}
	for try := 1; ; try++ {
		d.stop()
		env.Restart(t)
		d = newDomain(t, env, nil)
		if dropped(2 * time.Second) {
			break
		}
		if try == 5 {
			if !dropped(75 * time.Second) {
				t.Fatalf("the server still holds the expired account 75 s after its restart")
			}
			break
		}
	}
	defer d.stop()
	for i := range 2 {
		rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Expired != 1 || rep.Pushed != 0 {
			t.Errorf("pass %d after the server dropped the expired account: %+v, want it expired and not pushed", i, rep)
		}
	}
}

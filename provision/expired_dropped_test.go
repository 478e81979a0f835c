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
	_, d, acc := expiringAccount(t, "brief", "1s")
	defer d.stop()
	ctx := context.Background()
	ac, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	// A whole second past exp, wherever in a second the create came.
	time.Sleep(time.Until(time.Unix(ac.Expires+1, 0).Add(50 * time.Millisecond)))
	// The server's store drops it at its next check, within a minute.
	deadline := time.Now().Add(75 * time.Second)
	for {
		copies := d.lookupAll(t, acc.Account.PublicKey)
		if len(copies) == 1 && copies[0] == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still holds the expired account after 75 s: %d copies", len(copies))
		}
		time.Sleep(500 * time.Millisecond)
	}
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

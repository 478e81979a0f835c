package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/seal"
)

// TestInstanceWithSealProblemLeavesTheLease: an instance that meets
// account records sealed with a seal key it does not hold (another
// instance runs with another seal_key) fails every read of all accounts,
// so every pass it leads fails. It took and kept the reconciler lease all
// the same, and the instance that can read every record never
// reconciled: nothing was repaired anywhere. It now gives the lease up,
// and leaves it to the others.
func TestInstanceWithSealProblemLeavesTheLease(t *testing.T) {
	t.Parallel()
	sealProblemLeavesTheLease(t, 0)
}

// TestSealProblemLeavesALeaseItsClockCountsOut: the instance gave the
// lease up only while its own view of it had not run out. That view ends
// half an interval before the lease's ttl (and the others count the ttl
// from when they first see the lease), so an instance whose pass came a
// little late (a loaded machine, here a pause of 3 intervals) kept the
// lease in the bucket, and the instance that can read every record was
// refused it for a whole ttl more (what TestInstanceWithSealProblemLeavesTheLease
// met now and then on a loaded machine).
func TestSealProblemLeavesALeaseItsClockCountsOut(t *testing.T) {
	t.Parallel()
	sealProblemLeavesTheLease(t, 3)
}

// sealProblemLeavesTheLease: b, with another seal key, leads, meets a's
// record, waits pause reconcile intervals, and passes; then a must lead
// at once.
func sealProblemLeavesTheLease(t *testing.T, pause int) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	// 1 s, not less: on a loaded 2-core machine a pass's lease renewal
	// (every interval, the lease seen as lost 2.5 intervals after the
	// last) came too late at 300 ms, and b's first pass lost its lease.
	const interval = time.Second
	a := leaseDomain(t, env, "a", interval, 100, nil)
	b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) {
		kp, err := nkeys.CreateCurveKeys()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		key, err := seal.New(seed)
		if err != nil {
			t.Fatal(err)
		}
		c.Store.Close()
		st, err := kvstore.Open(context.Background(), env.ServiceUser(t), kvstore.Options{Seal: key, Bucket: env.Config.KVBucket, Instance: "b", Logger: provtest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		c.Store, c.Leader = st, st
		c.ReconcileInterval, c.ReconcileRate = interval, 100
	})
	ctx := context.Background()
	// b leads first, while it can read every record (there are none).
	rep, err := b.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil || rep.Skipped != "" {
		t.Fatalf("b's first pass: %+v, %v; want it to lead", rep, err)
	}
	if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.SealProblem() == nil {
		if time.Now().After(deadline) {
			t.Fatal("b never found the record sealed with a's key")
		}
		b.Reconcile(ctx, api.ReconcileRequest{})
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Duration(pause) * interval)
	rep, err = b.Reconcile(ctx, api.ReconcileRequest{})
	t.Logf("b's pass with the seal problem: %+v, %v", rep, err)
	if err == nil && rep.Skipped == "" {
		t.Errorf("b, which cannot read a's records, led a pass: %+v", rep)
	}
	rep, err = a.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil || rep.Skipped != "" || rep.Accounts != 1 {
		t.Errorf("a's pass after b's: %+v, %v; want a to lead and check acme", rep, err)
	}
}

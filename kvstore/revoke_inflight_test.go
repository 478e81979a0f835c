package kvstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// TestRevokeOfAKeyWhoseCreateIsInFlight: a user.create of key K (its
// public key given, so its record is durable) is in flight on an instance
// when a user.revoke of K, which found no record, runs on the same one.
// The revoke's revocation is in the account's version when it records K
// as revoked; that record is refused (K's write pending) and K, whose
// record is not in the mirror until stored, was not found either: the
// revoke answered 404 for a key whose revocation it had made. It waits for
// the create's record, and succeeds.
func TestRevokeOfAKeyWhoseCreateIsInFlight(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	seal, _ := newSealKey(t)
	st := openStore(t, d.connect(t, d.svcCreds), Options{Seal: seal})
	if !st.atomicBatches {
		t.Skip("the bucket takes no atomic batches: a durable record is written on its own")
	}
	seed, err := d.svcKeys[2].Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(d.dir, "operator.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	op, err := provision.LoadOperator(filepath.Join(d.dir, "operator.jwt"), seedFile)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := resolver.New(context.Background(), d.connect(t, d.sysCreds), resolver.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	svcPub, _ := d.svcKeys[0].PublicKey()
	logger, _ := newLog(t)
	svc, err := provision.New(provision.Config{Operator: op, Store: st, Resolver: rc, Protected: []string{svcPub}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	ctx := bg(t)
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := kp.PublicKey()

	// The batch loop is held: the create's durable record waits in it.
	gate := make(chan struct{})
	hold := func() { <-gate }
	st.gatherHook.Store(&hold)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	defer release()
	created := make(chan error, 1)
	go func() {
		_, err := svc.CreateUser(ctx, api.CreateUserRequest{Account: acc.Account.PublicKey, Name: "dev", PublicKey: k})
		created <- err
	}()
	eventually(t, 10*time.Second, "the create's record queued", func() bool {
		st.amu.Lock()
		defer st.amu.Unlock()
		return slices.ContainsFunc(st.queue, func(p *pendingWrite) bool { return p.key == userKey(k) })
	})
	revoked := make(chan error, 1)
	go func() {
		_, err := svc.RevokeUser(ctx, api.RevokeUserRequest{Account: acc.Account.PublicKey, User: k})
		revoked <- err
	}()
	// The revoke runs while the create's record is in flight; then the
	// record is let through.
	var rerr error
	select {
	case rerr = <-revoked:
	case <-time.After(2 * time.Second):
		release()
		rerr = <-revoked
	}
	release()
	if errors.Is(rerr, provision.ErrNotFound) {
		t.Fatalf("a revoke of a key whose create was in flight: %v; want it revoked (or 503), never 404", rerr)
	}
	if rerr != nil && !errors.Is(rerr, provision.ErrUnavailable) {
		t.Fatalf("the revoke: %v", rerr)
	}
	if err := <-created; err != nil {
		t.Logf("the create: %v", err)
	}
	a, err := st.Account(ctx, acc.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if rerr == nil && !ac.Revocations.IsRevoked(k, time.Now()) {
		t.Errorf("the revoke succeeded, but the account's version does not revoke %s", k)
	}
}

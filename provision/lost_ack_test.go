package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// ackLostUnderPeer, once armed, stores the first account version that
// revokes key, runs under (another instance's change on top of it), and
// then answers as a lost acknowledgement would.
type ackLostUnderPeer struct {
	*kvstore.Store
	key   string
	armed atomic.Bool
	under func()
}

func (l *ackLostUnderPeer) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	n, err := l.Store.UpdateAccount(ctx, a, rev)
	if err != nil || !revokes(a.JWT, l.key) || !l.armed.CompareAndSwap(true, false) {
		return n, err
	}
	l.under()
	return 0, fmt.Errorf("kvstore: update account %s: %w: %w", a.PublicKey, provision.ErrUnavailable, context.DeadlineExceeded)
}

func revokes(token, key string) bool {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return false
	}
	_, ok := c.Revocations[key]
	return ok
}

// TestLostAckUnderPeerChange: instance A's revoke is stored; instance B
// stores a change on top of it; then A's write answers unavailable (its
// acknowledgement lost). The revocation is in the store and on the
// servers, yet A, finding B's version rather than its own, answered its
// caller "unavailable". A revocation asked again on top of the newer
// version changes nothing it should not: A makes it again there and
// answers with the outcome.
func TestLostAckUnderPeerChange(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	key := newUserKey()
	l := &ackLostUnderPeer{Store: st, key: key}
	a, pub := acmeOver(t, env, l)
	ctx := context.Background()
	waitAccount(t, b, pub)
	l.under = func() {
		if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("by b")}); err != nil {
			t.Errorf("B's update: %v", err)
		}
	}
	l.armed.Store(true)
	_, err := a.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key})
	if l.armed.Load() {
		t.Fatal("the revocation was not written")
	}
	if errors.Is(err, provision.ErrUnavailable) {
		t.Errorf("the revoke answered %v while the store holds it under B's change", err)
	} else if err != nil {
		t.Fatal(err)
	}
	checkRevokedOnServers(t, env, b, pub, key)
}

// lateWrite, once armed, answers the first account version that revokes
// key as unavailable without storing it, and keeps the write for land:
// a request the stream leader commits only after the writer gave up.
type lateWrite struct {
	*kvstore.Store
	key   string
	armed atomic.Bool
	land  func() error
}

func (l *lateWrite) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if revokes(a.JWT, l.key) && l.armed.CompareAndSwap(true, false) {
		l.land = func() error {
			_, err := l.Store.UpdateAccount(context.Background(), a, rev)
			return err
		}
		return 0, fmt.Errorf("kvstore: update account %s: %w: %w", a.PublicKey, provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return l.Store.UpdateAccount(ctx, a, rev)
}

// TestWriteLandsAfterLandedGaveUp: a revoke's write answers unavailable
// and is not in the store when landed looks; it lands afterwards. The
// caller must not have been told success, and once it landed the
// reconciler must push the store's version, the revocation, to the
// servers: the outcome is the one a retry of the revoke reaches.
func TestWriteLandsAfterLandedGaveUp(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	key := newUserKey()
	l := &lateWrite{Store: st, key: key}
	a, pub := acmeOver(t, env, l)
	ctx := context.Background()
	l.armed.Store(true)
	_, err := a.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key})
	if l.land == nil {
		t.Fatal("the revocation was not written")
	}
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("the revoke answered %v before its write landed, want unavailable", err)
	}
	if err := l.land(); err != nil {
		t.Fatalf("the late write: %v", err)
	}
	// B's pass reads its mirror of the store: wait until it shows the
	// late write.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rep, err := b.GetAccount(ctx, api.AccountRequest{Account: pub})
		if err == nil && revokes(rep.Account.JWT, key) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never saw the late write (%v)", err)
		}
	}
	if _, err := b.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	checkRevokedOnServers(t, env, b, pub, key)
}

// latestUnavailable, once armed, answers the next reads of an account's
// latest version as unavailable, as a store electing a stream leader
// does for a moment.
type latestUnavailable struct {
	*kvstore.Store
	fails atomic.Int32
}

func (l *latestUnavailable) LatestJWT(ctx context.Context, pub string) (string, error) {
	if l.fails.Add(-1) >= 0 {
		return "", fmt.Errorf("kvstore: read account %s: %w: %w", pub, provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return l.Store.LatestJWT(ctx, pub)
}

// TestStaleRepushAfterUnavailableRead: B's update (v1) is stored and its
// push is slow; A revokes a key on top (v2), pushes it and answers
// success. B's push of v1 lands last, and B's read of the store after it
// answers unavailable for a moment. Giving up at once left v1, without
// the acknowledged revocation, on the servers until a reconcile pass.
func TestStaleRepushAfterUnavailableRead(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, stB := kvDomain(t, env, nil)
	lu := &latestUnavailable{Store: stB}
	g := newGate(1, 0)
	g.Resolver = rawResolver(t, env)
	b := domainOver(t, env, lu, g)
	a, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	waitAccount(t, b, pub)
	updated := make(chan error, 1)
	go func() {
		_, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("v1")})
		updated <- err
	}()
	<-g.reached // B's v1 stored, its push under way
	key := newUserKey()
	if _, err := a.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key}); err != nil {
		t.Fatal(err)
	}
	lu.fails.Store(2)
	close(g.released)
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	checkRevokedOnServers(t, env, a, pub, key)
}

// acmeOver starts a domain over st, pushing straight to the servers, and
// creates the account "acme" through it; it returns the domain and the
// account's public key.
func acmeOver(t *testing.T, env *provtest.Env, st provision.Store) (*provision.Service, string) {
	t.Helper()
	a := domainOver(t, env, st, rawResolver(t, env))
	acc, err := a.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return a, acc.Account.PublicKey
}

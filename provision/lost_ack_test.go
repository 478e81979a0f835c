package provision_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

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
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	b, _ := kvDomain(t, env, nil)
	key := newUserKey()
	l := &ackLostUnderPeer{Store: st, key: key}
	a := domainOver(t, env, l, rawResolver(t, env))
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	waitAccount(t, b, pub)
	l.under = func() {
		if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("by b")}); err != nil {
			t.Errorf("B's update: %v", err)
		}
	}
	l.armed.Store(true)
	_, err = a.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key})
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

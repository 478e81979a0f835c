package provision_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestGetAfterAnUpdateOnAnotherInstance: account.get answered from the
// instance's mirror of the bucket, so a get that reached the other
// instance right after an acknowledged update showed the version before
// it for as long as that mirror lagged: milliseconds while its watcher
// delivers, seconds while the watcher recovers from the loss of the
// stream leader (TestHAClusterNodeLoss saw it once). A get reads the
// bucket's latest version.
func TestGetAfterAnUpdateOnAnotherInstance(t *testing.T) {
	t.Parallel()
	lag := &laggingMirror{} // stale set by hand below, never armed
	a, b, old := laggingPair(t, api.CreateAccountRequest{Name: "acme", Description: "first"}, func(st *kvstore.Store) provision.Store {
		lag.Store = st
		return lag
	})
	ctx := context.Background()
	lag.stale.Store(&old) // b's mirror has not seen a's update yet
	desc := "second"
	up, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"acme", old.PublicKey} {
		got, err := b.GetAccount(ctx, api.AccountRequest{Account: ref})
		if err != nil {
			t.Fatal(err)
		}
		if got.Account.Claims.Description != desc || got.Account.JWT != up.Account.JWT {
			t.Errorf("account.get %q on the other instance after an acknowledged update: description %q, want %q (the JWT the update answered: %v)",
				ref, got.Account.Claims.Description, desc, got.Account.JWT == up.Account.JWT)
		}
	}
}

// laggingPair opens instances a and b of a KV deployment, b's store the
// one wrap makes of its own (a mirror that lags a's writes), creates the
// account req names ("acme") on a, and returns it as a's store then holds
// it.
func laggingPair(t *testing.T, req api.CreateAccountRequest, wrap func(*kvstore.Store) provision.Store) (a, b *provision.Service, old provision.Account) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, st := kvDomainOf(t, env, "a", nil)
	b, _ = kvDomainOf(t, env, "b", nil, func(c *provision.Config) { c.Store = wrap(c.Store.(*kvstore.Store)) })
	ctx := context.Background()
	if _, err := a.CreateAccount(ctx, req); err != nil {
		t.Fatal(err)
	}
	old, err := st.AccountByName(ctx, req.Name)
	if err != nil {
		t.Fatal(err)
	}
	return a, b, old
}

// TestGetAfterADeleteOnAnotherInstance: account.get checked that the
// account was live in the instance's mirror, then answered the bucket's
// latest version without looking at it: right after another instance's
// acknowledged delete, not yet in this mirror, the get answered 200 with
// the tombstone (its disabled JWT) as if the account were there. A get of
// a deleted account is a 404 whichever instance it reaches.
func TestGetAfterADeleteOnAnotherInstance(t *testing.T) {
	t.Parallel()
	lag := &laggingMirror{} // stale set by hand below, never armed
	a, b, old := laggingPair(t, api.CreateAccountRequest{Name: "acme"}, func(st *kvstore.Store) provision.Store {
		lag.Store = st
		return lag
	})
	ctx := context.Background()
	lag.stale.Store(&old) // b's mirror has not seen a's delete yet
	if _, err := a.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetAccount(ctx, api.AccountRequest{Account: old.PublicKey})
	if !errors.Is(err, provision.ErrNotFound) {
		var conn int64
		if got != nil && got.Account.Claims != nil {
			conn = got.Account.Claims.Limits.Conn
		}
		t.Fatalf("account.get on the other instance after an acknowledged delete: %v (a reply: %v, its JWT's conn limit %d), want a 404", err, got != nil, conn)
	}
}

// staleName answers the first AccountByName of a name with the account it
// held before (a mirror that has not seen the delete and the create that
// followed it on another instance); the reads after it are the store's.
type staleName struct {
	*kvstore.Store
	stale atomic.Pointer[provision.Account]
}

func (l *staleName) AccountByName(ctx context.Context, name string) (provision.Account, error) {
	if a := l.stale.Load(); a != nil && a.Name == name && l.stale.CompareAndSwap(a, nil) {
		return *a, nil
	}
	return l.Store.AccountByName(ctx, name)
}

// TestGetByNameAfterADeleteAndACreateOnAnotherInstance: "delete acme" and
// then "create acme" on one instance, and "get acme" on another whose
// mirror has seen neither: the name led to the deleted account, whose
// latest record is its tombstone, so the get answered that account (or a
// 404) though the name belongs to the new one. The read of the tombstone
// brings the mirror past it; the name is resolved again.
func TestGetByNameAfterADeleteAndACreateOnAnotherInstance(t *testing.T) {
	t.Parallel()
	lag := &staleName{}
	a, b, old := laggingPair(t, api.CreateAccountRequest{Name: "acme"}, func(st *kvstore.Store) provision.Store {
		lag.Store = st
		return lag
	})
	ctx := context.Background()
	if _, err := a.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	created, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	lag.stale.Store(&old) // b's mirror has seen neither
	got, err := b.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatalf("account.get \"acme\" on the other instance after the delete and the create of acme: %v, want the new account %s", err, created.Account.PublicKey)
	}
	if got.Account.PublicKey != created.Account.PublicKey {
		t.Fatalf("account.get \"acme\" on the other instance answered %s, want the new account %s (the deleted one: %v)", got.Account.PublicKey, created.Account.PublicKey, got.Account.PublicKey == old.PublicKey)
	}
}

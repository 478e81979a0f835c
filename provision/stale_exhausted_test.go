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

// alwaysStale is a KV store on which, once armed, every account update
// loses to another instance's: what a change sees while other instances
// keep winning the compare-and-set.
type alwaysStale struct {
	*kvstore.Store
	armed atomic.Bool
	lost  atomic.Int32
}

func (s *alwaysStale) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if s.armed.Load() {
		s.lost.Add(1)
		return 0, fmt.Errorf("kvstore: update account %s: %w", a.PublicKey, provision.ErrStale)
	}
	return s.Store.UpdateAccount(ctx, a, rev)
}

// TestChangeThatKeepsLosingIsUnavailable: a change made again on top of
// other instances' versions until its retries ran out answered 409
// "changed meanwhile", which callers take for a conflict (a name or key
// taken) and do not retry, though nothing was changed and a retry is what
// helps. It answers unavailable, and changes nothing.
func TestChangeThatKeepsLosingIsUnavailable(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	st := &alwaysStale{}
	svc, _ := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		st.Store = c.Store.(*kvstore.Store)
		c.Store = st
	})
	ctx := context.Background()
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Description: "first"})
	if err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	desc := "second"
	_, err = svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Description: &desc})
	if !errors.Is(err, provision.ErrUnavailable) || errors.Is(err, provision.ErrStale) || errors.Is(err, provision.ErrConflict) {
		t.Errorf("an update that lost the compare-and-set %d times: %v, want unavailable (retry), not stale or conflict", st.lost.Load(), err)
	}
	if st.lost.Load() < 2 {
		t.Errorf("the update was tried %d times, want it made again on top of the winners' versions", st.lost.Load())
	}
	st.armed.Store(false)
	got, err := svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Account.Claims.Description != "first" || got.Account.JWT != acc.Account.JWT {
		t.Errorf("after the update that kept losing the account holds %q, want it unchanged", got.Account.Claims.Description)
	}
}

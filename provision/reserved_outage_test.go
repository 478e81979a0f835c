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
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// lookupsUnanswered, while on, has every LOOKUP go unanswered, as while
// the servers are away.
type lookupsUnanswered struct {
	provision.Resolver
	on atomic.Bool
}

func (l *lookupsUnanswered) LookupAll(ctx context.Context, pub string) ([]string, error) {
	if l.on.Load() {
		return nil, fmt.Errorf("%w: no server answered the lookup of %s", provision.ErrTimeout, pub)
	}
	return l.Resolver.LookupAll(ctx, pub)
}

// TestSystemAccountByNameWhileNoServerAnswers: the system account is named
// by its name while no server answers a LOOKUP (the name is asked of the
// servers). That is an outage, not an unknown account: a 404 "no account
// named" tells the caller it does not exist and not to retry.
func TestSystemAccountByNameWhileNoServerAnswers(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	var l *lookupsUnanswered
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver {
		l = &lookupsUnanswered{Resolver: r}
		return l
	})
	t.Cleanup(d.stop)
	ctx := context.Background()
	sys := d.op.SystemAccount
	token, err := d.rc.Lookup(ctx, sys)
	if err != nil || token == "" {
		t.Fatalf("lookup of the system account: %q, %v", token, err)
	}
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	l.on.Store(true)
	_, err = d.svc.GetAccount(ctx, api.AccountRequest{Account: c.Name})
	if errors.Is(err, provision.ErrNotFound) || !errors.Is(err, provision.ErrTimeout) {
		t.Errorf("get of the system account by name (%q) while no server answers: got %v, want the lookup's ErrTimeout", c.Name, err)
	}
	l.on.Store(false)
	if _, err = d.svc.GetAccount(ctx, api.AccountRequest{Account: c.Name}); err != nil {
		t.Errorf("get of the system account by name once the servers answer: %v", err)
	}
}

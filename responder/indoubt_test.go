package responder_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// lostAckStore stands for a replicated store (it can read past its
// cache: AccountLatest) whose writes, once armed, land but are answered
// unavailable (the acknowledgement lost), and whose reads then fail: the
// service cannot tell whether the write landed.
type lostAckStore struct {
	provision.Store
	armed atomic.Bool
}

var errUnreadable = errors.New("kv get: connection lost")

func (l *lostAckStore) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	n, err := l.Store.UpdateAccount(ctx, a, rev)
	if err == nil && l.armed.Load() {
		return 0, fmt.Errorf("%w: kv update: no acknowledgement", provision.ErrUnavailable)
	}
	return n, err
}

func (l *lostAckStore) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	if l.armed.Load() {
		return provision.Account{}, errUnreadable
	}
	return l.Store.Account(ctx, pub)
}

// TestWriteInDoubtIs504: a change whose store write got no answer, and
// whose read-back then failed, was answered 503 "retry": but the write had
// landed (here it did; with a write nats.go keeps in its reconnect
// buffer, it may land after the answer). A retry then made the change a
// second time, or failed as a conflict with the first. It is answered 504,
// saying it may have taken effect.
func TestWriteInDoubtIs504(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &lostAckStore{Store: svc.Store}
	p := domain(t, svc, provision.Config{Store: store})
	extra(t, env, p, responder.Config{Prefix: "prov.doubt", Name: "doubt"})
	if r := provtest.Request(t, admin, "prov.doubt.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatalf("account.create: %d %q", r.Code, r.Description)
	}
	store.armed.Store(true)
	r := provtest.Request(t, admin, "prov.doubt.account.update", `{"account":"acme","tags":["x"]}`)
	if r.Code != api.CodeTimeout || !strings.Contains(r.Description, "may have") {
		t.Errorf("account.update whose write is in doubt: %d %q, want 504 saying it may have taken effect", r.Code, r.Description)
	}
	store.armed.Store(false)
	a, err := svc.Store.AccountByName(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := jwt.DecodeAccountClaims(a.JWT); err != nil || len(c.Tags) != 1 {
		t.Fatalf("the test's write did not land: %v", err)
	}
}

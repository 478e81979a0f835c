package responder_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// lostUserAckStore stands for a replicated store whose user records, once
// armed, land but are answered unavailable (the acknowledgement lost),
// and whose reads of users then fail.
type lostUserAckStore struct {
	provision.Store
	armed atomic.Bool
}

func (l *lostUserAckStore) AddUser(ctx context.Context, u provision.User, durable bool) error {
	err := l.Store.AddUser(ctx, u, durable)
	if err == nil && l.armed.Load() {
		return fmt.Errorf("%w: kv create: no acknowledgement", provision.ErrUnavailable)
	}
	return err
}

func (l *lostUserAckStore) User(ctx context.Context, pub string) (provision.User, error) {
	if l.armed.Load() {
		return provision.User{}, errUnreadable
	}
	return l.Store.User(ctx, pub)
}

func (l *lostUserAckStore) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	return l.Store.Account(ctx, pub)
}

// TestUserRecordInDoubtIs504: a user.create whose record (durable, as
// durable_user_records or a key the caller sent makes it) got no answer
// from the store, and could not be read back, was answered 503 "retry":
// but the record had landed, and the retry of the same name was refused
// 409, an active user of that name existing (whose creds nobody got). It
// is answered 504, saying it may have taken effect, as an account write
// in doubt is.
func TestUserRecordInDoubtIs504(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &lostUserAckStore{Store: svc.Store}
	p, err := provision.New(provision.Config{Operator: svc.Operator, Store: store, Resolver: svc.Resolver, Logger: provtest.Logger(t), DurableUserRecords: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	extra(t, env, p, responder.Config{Prefix: "prov.udoubt", Name: "udoubt"})
	if r := provtest.Request(t, admin, "prov.udoubt.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatalf("account.create: %d %q", r.Code, r.Description)
	}
	store.armed.Store(true)
	r := provtest.Request(t, admin, "prov.udoubt.user.create", `{"account":"acme","name":"alice"}`)
	store.armed.Store(false)
	if r.Code != api.CodeTimeout || !strings.Contains(r.Description, "may have") {
		t.Errorf("user.create whose record is in doubt: %d %q, want 504 saying it may have taken effect", r.Code, r.Description)
	}
	if r := provtest.Request(t, admin, "prov.udoubt.user.list", `{"account":"acme"}`); r.Code != 0 || !strings.Contains(string(r.Raw), `"alice"`) {
		t.Fatalf("the test's record did not land: %d %s", r.Code, r.Raw)
	}
}

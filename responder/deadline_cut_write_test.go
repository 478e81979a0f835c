package responder_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// cutRecordStore stands for a replicated store whose revoked-key records,
// once armed, are held until the request's context ends, and then land:
// the answer is the store's for a write its caller's deadline cut short
// (unavailable, the deadline), though the record is stored.
type cutRecordStore struct {
	provision.Store
	armed atomic.Bool
}

func (l *cutRecordStore) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if !u.Revoked || !l.armed.Load() {
		return l.Store.AddUser(ctx, u, durable)
	}
	<-ctx.Done()
	go l.Store.AddUser(context.Background(), u, durable)
	return fmt.Errorf("kvstore: add user %s: %w: %w", u.PublicKey, provision.ErrUnavailable, ctx.Err())
}

func (l *cutRecordStore) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	return l.Store.Account(ctx, pub)
}

// TestWriteCutByRequestTimeoutIs504: a revoke of a key with no record puts
// the revocation in the account's version, then records the key; that
// write, cut by request_timeout, answered unavailable, and landed. When
// the handler returned before the responder saw the deadline (one time in
// six here), the caller heard 503 "nothing was changed, retry", else the
// deadline's 504 "may have taken effect". It is 504 every time.
func TestWriteCutByRequestTimeoutIs504(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &cutRecordStore{Store: svc.Store}
	p := domain(t, svc, provision.Config{Store: store})
	extra(t, env, p, responder.Config{Prefix: "prov.cut", Name: "cut", RequestTimeout: 300 * time.Millisecond})
	// Made through the deployment's own responder, on the same store: a
	// create under this one's 300 ms timeout failed on a loaded machine.
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatalf("account.create: %d %q", r.Code, r.Description)
	}
	store.armed.Store(true)
	codes := map[int]int{}
	for range 30 {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		r := provtest.Request(t, admin, "prov.cut.user.revoke", `{"account":"acme","user":"`+pub+`"}`)
		codes[r.Code]++
		if r.Code == api.CodeUnavailable {
			t.Logf("503: %q", r.Description)
		}
	}
	t.Logf("codes %v", codes)
	if codes[api.CodeUnavailable] > 0 {
		t.Errorf("a revoke whose record write the request's deadline cut (and which landed) was answered 503 %d times of 30: %v", codes[api.CodeUnavailable], codes)
	}
}

package responder_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
	p := domain(t, svc, provision.Config{Store: store, DurableUserRecords: true})
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

// unsentUserStore stands for a replicated store whose user records, once
// armed, are answered unavailable without landing (the request never
// reached the stream leader), while reads work.
type unsentUserStore struct {
	provision.Store
	armed atomic.Bool
}

func (l *unsentUserStore) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if l.armed.Load() {
		return fmt.Errorf("%w: kv create: no responders", provision.ErrUnavailable)
	}
	return l.Store.AddUser(ctx, u, durable)
}

func (l *unsentUserStore) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	return l.Store.Account(ctx, pub)
}

// TestUserRecordNotLandedIs503: a user.create whose record the store
// answered unavailable, and which the store, readable, then does not
// hold, did not take effect: it is answered 503 at once, as an account
// write read back as not landed is, not after landedWait (15 s) of
// reading it again as 504 "may have taken effect", for durable and
// background records alike.
func TestUserRecordNotLandedIs503(t *testing.T) {
	for _, durable := range []bool{true, false} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			env := provtest.Deployment(t, bootstrap.Options{Store: bootstrap.StoreJetStream})
			svc := env.Start(t)
			admin := env.Admin(t)
			store := &unsentUserStore{Store: svc.Store}
			p := domain(t, svc, provision.Config{Store: store, DurableUserRecords: durable})
			extra(t, env, p, responder.Config{Prefix: "prov.unsent", Name: "unsent"})
			if r := provtest.Request(t, admin, "prov.unsent.account.create", `{"name":"acme"}`); r.Code != 0 {
				t.Fatalf("account.create: %d %q", r.Code, r.Description)
			}
			store.armed.Store(true)
			start := time.Now()
			r := provtest.Request(t, admin, "prov.unsent.user.create", `{"account":"acme","name":"alice"}`)
			took := time.Since(start)
			store.armed.Store(false)
			if r.Code != api.CodeUnavailable || took > 5*time.Second {
				t.Errorf("user.create whose record surely did not land: %d %q after %s, want 503 at once", r.Code, r.Description, took.Round(time.Millisecond))
			}
			if r := provtest.Request(t, admin, "prov.unsent.user.create", `{"account":"acme","name":"alice"}`); r.Code != 0 {
				t.Errorf("the retry: %d %q, want the user issued", r.Code, r.Description)
			}
		})
	}
}

// revokedMeanwhileStore stands for a replicated store where, once armed, a
// revoke by key of the user's key lands first: the user's own record is
// refused, and answered unavailable with the store's own words, which name
// its stream and keys.
type revokedMeanwhileStore struct {
	provision.Store
	armed atomic.Bool
}

func (l *revokedMeanwhileStore) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if l.armed.Load() {
		other := u
		other.Name, other.Revoked = "", true
		if err := l.Store.AddUser(ctx, other, true); err != nil {
			return err
		}
		return fmt.Errorf("%w: kv create KV_provisioner u.%s: no responders", provision.ErrUnavailable, u.PublicKey)
	}
	return l.Store.AddUser(ctx, u, durable)
}

func (l *revokedMeanwhileStore) AccountLatest(ctx context.Context, pub string) (provision.Account, error) {
	return l.Store.Account(ctx, pub)
}

// TestUserRecordConflictHidesStoreError: a user.create whose record write
// failed while the key got another record (a revoke by key) is a 409 that
// says so, without the store's error (stream and key names), which goes
// to the log only, not to the caller nor to $SRV.STATS, which every admin
// reads.
func TestUserRecordConflictHidesStoreError(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{Store: bootstrap.StoreJetStream})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &revokedMeanwhileStore{Store: svc.Store}
	p := domain(t, svc, provision.Config{Store: store, DurableUserRecords: true})
	r := extra(t, env, p, responder.Config{Prefix: "prov.umeanwhile", Name: "umeanwhile"})
	if rep := provtest.Request(t, admin, "prov.umeanwhile.account.create", `{"name":"acme"}`); rep.Code != 0 {
		t.Fatalf("account.create: %d %q", rep.Code, rep.Description)
	}
	store.armed.Store(true)
	rep := provtest.Request(t, admin, "prov.umeanwhile.user.create", `{"account":"acme","name":"alice"}`)
	store.armed.Store(false)
	if rep.Code != api.CodeConflict || !strings.Contains(rep.Description, "issued meanwhile") {
		t.Errorf("user.create whose key was revoked meanwhile: %d %q, want 409", rep.Code, rep.Description)
	}
	if strings.Contains(rep.Description, "KV_provisioner") {
		t.Errorf("the 409 carries the store's error: %q", rep.Description)
	}
	if u := endpointOf(t, r.Stats(), "user_create"); strings.Contains(u.LastError, "KV_provisioner") {
		t.Errorf("$SRV.STATS carries the store's error: %q", u.LastError)
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
	"github.com/natsprov/provisioner/seal"
)

// refuseDisabled refuses (nothing stored) every push of a JWT revoking "*".
type refuseDisabled struct {
	provision.Resolver
	on atomic.Bool
}

func (r *refuseDisabled) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if r.on.Load() {
		c, _ := jwt.DecodeAccountClaims(token)
		if c != nil {
			if _, ok := c.Revocations[jwt.All]; ok {
				res := provision.PushResult{{Server: "x", Code: 500, Message: "nope", Answered: true}}
				return res, &provision.RefusedError{Result: res, Reason: "test refusal"}
			}
		}
	}
	return r.Resolver.Update(ctx, token)
}

func kvDomain(t *testing.T, env *provtest.Env, wrap func(provision.Resolver) provision.Resolver) (*provision.Service, *kvstore.Store) {
	return kvDomainOf(t, env, "", wrap)
}

// kvDomainOf is a service on env's KV store as instance ("": the store's
// default), its resolver wrapped by wrap (nil: as it is) and its config
// changed by tune.
func kvDomainOf(t *testing.T, env *provtest.Env, instance string, wrap func(provision.Resolver) provision.Resolver, tune ...func(*provision.Config)) (*provision.Service, *kvstore.Store) {
	t.Helper()
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := seal.Load(env.Config.SealKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kvstore.Open(context.Background(), env.ServiceUser(t), kvstore.Options{Seal: key, Bucket: env.Config.KVBucket, Instance: instance, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.ReconnectBufSize(-1))
	rc, err := resolver.New(context.Background(), nc, resolver.Options{Timeout: 2 * time.Second, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	var r provision.Resolver = rc
	if wrap != nil {
		r = wrap(rc)
	}
	cfg := provision.Config{Operator: op, Store: st, Resolver: r, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)}
	for _, f := range tune {
		f(&cfg)
	}
	svc, err := provision.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc, st
}

// TestFailedDeleteIsPutBackOnKV: a delete whose disabled push is refused
// leaves the account as it was, on the KV store too (where the tombstone
// must claim its name again to become live).
func TestFailedDeleteIsPutBackOnKV(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	rd := &refuseDisabled{}
	svc, st := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { rd.Resolver = r; return rd })
	ctx := context.Background()
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	rd.on.Store(true)
	_, err = svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	t.Logf("delete: %v", err)
	if err == nil {
		t.Fatal("delete should have failed")
	}
	a, err := st.AccountLatest(ctx, acc.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after failed delete: phase=%s keys=%d identity=%v", a.Phase, len(a.SigningKeys), a.IdentitySeed != "")
	if !a.Live() || len(a.SigningKeys) == 0 {
		t.Errorf("failed delete changed the store: phase %s, %d signing keys", a.Phase, len(a.SigningKeys))
	}
	// The stored JWT is the account's, not the refused disabled version.
	was, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	now, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if _, all := now.Revocations[jwt.All]; all || now.Limits.Conn != was.Limits.Conn {
		t.Errorf("failed delete left the disabled JWT in the store: conn limit %d (was %d), every user revoked: %t", now.Limits.Conn, was.Limits.Conn, all)
	}
	// The account is live by its name again: a user can be made in it.
	if _, err := svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "bob"}); err != nil {
		t.Errorf("create user in the account after its failed delete: %v", err)
	}
	got, err := svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatalf("account.get by name after the failed delete: %v", err)
	}
	if got.Account.PublicKey != acc.Account.PublicKey {
		t.Errorf("account.get acme after the failed delete: %s, want %s", got.Account.PublicKey, acc.Account.PublicKey)
	}
}

// TestDeleteAnExpiredAccount: an account past its expiry can still be
// deleted (its disabled version has no expiry).
func TestDeleteAnExpiredAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "short", ExpiresIn: "2s"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	_, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "short"})
	t.Logf("delete of an expired account: %v", err)
	if err != nil {
		t.Errorf("cannot delete an expired account: %v", err)
	}
}

// revokeInAVersion makes account "acme" with user alice just after a second
// boundary, and starts a revoke of alice that waits for the next second
// (a version per account per second): a change sent within 100 ms, when
// it returns, joins the revoke's version. The revoke's outcome comes on
// the channel.
func revokeInAVersion(t *testing.T, d *domain) <-chan error {
	t.Helper()
	ctx := context.Background()
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 20*time.Millisecond)))
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	alice, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	revErr := make(chan error, 1)
	go func() {
		_, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: alice.User.PublicKey})
		revErr <- err
	}()
	time.Sleep(100 * time.Millisecond)
	return revErr
}

// TestInvalidChangeFailsAlone: an invalid update that joins a version with
// a revoke fails alone; the revoke lands.
func TestInvalidChangeFailsAlone(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	revErr := revokeInAVersion(t, d)
	bad := jwt.Exports{&jwt.Export{Subject: "svc.>", Type: jwt.Service, ResponseType: "bogus"}}
	_, uerr := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Exports: &bad})
	rerr := <-revErr
	t.Logf("bad update: %v", uerr)
	t.Logf("innocent revoke: %v", rerr)
	if !errors.Is(uerr, provision.ErrInvalid) {
		t.Errorf("the update with an invalid export = %v, want ErrInvalid", uerr)
	}
	if rerr != nil {
		t.Errorf("the revoke failed because of another caller's update: %v", rerr)
	}
	acc, err := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ac.Exports); n != 0 {
		t.Errorf("the invalid update landed: the account has %d exports, want none", n)
	}
}

// TestRoleTemplateReachesRetiredKeys: a role's template narrowed after a
// rotation also binds the users signed by the role's retired scoped key.
func TestRoleTemplateReachesRetiredKeys(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	wide := &api.Role{Pub: &jwt.Permission{Allow: jwt.StringList{"wide.>"}}}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": wide}}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "dev1", Role: "device"})
	if err != nil {
		t.Fatal(err)
	}
	uc, _ := jwt.DecodeUserClaims(u.User.JWT)
	if _, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme"}); err != nil {
		t.Fatal(err)
	}
	narrow := &api.Role{Pub: &jwt.Permission{Allow: jwt.StringList{"narrow.>"}}}
	out, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{"device": narrow}})
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := jwt.DecodeAccountClaims(out.Account.JWT)
	sc, ok := ac.SigningKeys.GetScope(uc.Issuer)
	if !ok || sc == nil {
		t.Fatalf("dev1's signer %s is not in the account JWT", uc.Issuer)
	}
	tmpl := sc.(*jwt.UserScope).Template
	t.Logf("dev1's signer template after narrowing the role: pub allow %v", tmpl.Pub.Allow)
	if tmpl.Pub.Allow.Contains("wide.>") {
		t.Errorf("dev1 (signed by the retired device key) keeps pub allow wide.> after the role was narrowed")
	}
	nc, err := nats.Connect(env.Server.URL(), nats.UserCredentials(writeCreds(t, u.User)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	errs := make(chan error, 1)
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err })
	nc.Publish("wide.x", nil)
	nc.Flush()
	select {
	case err := <-errs:
		t.Logf("publish wide.x: %v", err)
	case <-time.After(500 * time.Millisecond):
		t.Errorf("dev1 may still publish on wide.x after the role was narrowed to narrow.>")
	}
}

// TestExpiredUserIsNotActive: once a revoked, expired user's revocation is
// pruned, the user does not count as active again: its name is free.
func TestExpiredUserIsNotActive(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.RevocationMargin = time.Millisecond })
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "temp", ExpiresIn: "1s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: "temp"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "temp"}); err != nil {
		t.Logf("re-using the name right after the revoke: %v", err)
	} else {
		if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: "temp"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	desc := "x"
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Description: &desc}); err != nil {
		t.Fatal(err)
	}
	ls, _ := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	t.Logf("users after prune: %+v", ls.Users)
	_, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "temp"})
	t.Logf("create temp after the prune: %v", err)
	if err != nil {
		t.Errorf("name of a revoked, expired user is blocked after its revocation was pruned: %v", err)
	}
}

// TestFinishedDeleteNotPushedAgain: with allow_delete off, a finished
// delete (the disabled version kept as the end state) is checked, not
// pushed again, by every pass.
func TestFinishedDeleteNotPushedAgain(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{NoDelete: true})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("delete: phase %s", rep.Phase)
	for i := 0; i < 3; i++ {
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d: pushed=%d deleted=%d messages=%d", i, r.Pushed, r.Deleted, r.Messages)
		if i > 0 && r.Pushed > 0 {
			t.Errorf("pass %d pushes the finished delete again: %+v", i, r)
		}
	}
}

// lostAck stores an update but answers as a lost acknowledgement would.
type lostAck struct {
	*kvstore.Store
	armed atomic.Bool
}

func (l *lostAck) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	n, err := l.Store.UpdateAccount(ctx, a, rev)
	if err == nil && l.armed.CompareAndSwap(true, false) {
		return 0, fmt.Errorf("kvstore: update account: %w: %w", provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return n, err
}

// TestLostStoreAckAgreesWithReply: a store write whose acknowledgement is
// lost but that landed is found out: the reply and the outcome agree.
func TestLostStoreAckAgreesWithReply(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	_, st := kvDomain(t, env, nil)
	la := &lostAck{Store: st}
	op, _ := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.ReconnectBufSize(-1))
	rc, err := resolver.New(context.Background(), nc, resolver.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	svc, err := provision.New(provision.Config{Operator: op, Store: la, Resolver: rc, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	la.armed.Store(true)
	_, derr := svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	_, gerr := svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	// The reply and the outcome agree: the write landed, so the delete
	// went on and says so.
	switch {
	case derr == nil && !errors.Is(gerr, provision.ErrNotFound):
		t.Errorf("the delete answered success, and the account is still there (%v)", gerr)
	case derr != nil && gerr != nil:
		t.Errorf("the delete answered %v, and the account is gone (%v)", derr, gerr)
	case derr != nil:
		t.Errorf("the write landed, yet the delete answered %v", derr)
	}
}

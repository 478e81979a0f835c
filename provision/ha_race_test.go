package provision_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// gate holds the push number holdAt (1-based) until released, after
// handing over its token; the push number failAt is not sent and fails as
// a timeout (a server may hold it).
type gate struct {
	provision.Resolver
	n        atomic.Int32
	holdAt   int32
	failAt   int32
	reached  chan string
	released chan struct{}
}

func (g *gate) Update(ctx context.Context, token string) (provision.PushResult, error) {
	i := g.n.Add(1)
	if i == g.failAt {
		return provision.PushResult{{Server: "x", Answered: false}}, provision.ErrTimeout
	}
	if i == g.holdAt {
		g.reached <- token
		<-g.released
	}
	return g.Resolver.Update(ctx, token)
}

func newGate(holdAt, failAt int32) *gate {
	return &gate{holdAt: holdAt, failAt: failAt, reached: make(chan string, 1), released: make(chan struct{})}
}

// rawResolver is a resolver client of its own, to read the servers.
func rawResolver(t *testing.T, env *provtest.Env) *resolver.Client {
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.ReconnectBufSize(-1))
	rc, err := resolver.New(context.Background(), nc, resolver.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

// createThenUpdate creates account "acme" through svc, then starts an
// update of its description in the background; updated gets its outcome.
func createThenUpdate(t *testing.T, svc *provision.Service, description string) (pub string, updated <-chan error) {
	t.Helper()
	ctx := context.Background()
	acc, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan error, 1)
	go func() {
		_, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: acc.Account.PublicKey, Description: ptr(description)})
		out <- err
	}()
	return acc.Account.PublicKey, out
}

// waitAccount waits until svc's store shows the account.
func waitAccount(t *testing.T, svc *provision.Service, pub string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := svc.GetAccount(context.Background(), api.AccountRequest{Account: pub})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("account %s never visible: %v", pub, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRevokedOnServers waits a couple of seconds, then fails when the
// store or a server's copy of the account lacks the revocation of key.
func checkRevokedOnServers(t *testing.T, env *provtest.Env, svc *provision.Service, pub, key string) {
	t.Helper()
	time.Sleep(3 * time.Second)
	rep, err := svc.GetAccount(context.Background(), api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := jwt.DecodeAccountClaims(rep.Account.JWT)
	if _, ok := stored.Revocations[key]; !ok {
		t.Fatalf("the store lacks the revocation of %s", key)
	}
	copies, err := rawResolver(t, env).LookupAll(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		c, err := jwt.DecodeAccountClaims(cp)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Revocations[key]; !ok {
			t.Errorf("3s later a server holds iat %d (store: iat %d) without the revocation of %s", c.IssuedAt, stored.IssuedAt, key)
		}
	}
}

func newUserKey() string {
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	return pub
}

// TestCreatePushLandsLastOverPeerRevoke: instance A's account.create push is
// slow; meanwhile instance B (same KV store) revokes a key in the new
// account, stores and pushes it. A's create push lands last and, with no
// re-read after it, the servers keep the version without the revocation.
func TestCreatePushLandsLastOverPeerRevoke(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	g := newGate(1, 0)
	a, _ := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	created := createInBackground(a, "acme")
	token := <-g.reached // A stored the account; its push is under way
	c, _ := jwt.DecodeAccountClaims(token)
	waitAccount(t, b, c.Subject)
	key := newUserKey()
	if _, err := b.RevokeUser(ctx, api.RevokeUserRequest{Account: c.Subject, User: key}); err != nil {
		t.Fatal(err)
	}
	close(g.released)
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	checkRevokedOnServers(t, env, b, c.Subject, key)
}

// TestRestorePushLandsLastOverPeerRevoke: instance A's update fails its push
// (a timeout: a server may hold it), so A puts the account back: stores the
// previous content anew and pushes it. Instance B revokes a key on top of
// that while A's push is under way. A's push lands last and, with no
// re-read after it, the servers keep the version without the revocation.
func TestRestorePushLandsLastOverPeerRevoke(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	g := newGate(3, 2) // 1: create, 2: update (fails), 3: restore's push
	a, _ := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { g.Resolver = r; return g })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	pub, updated := createThenUpdate(t, a, "x")
	<-g.reached // A stored the restored version; its push is under way
	waitAccount(t, b, pub)
	key := newUserKey()
	if _, err := b.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key}); err != nil {
		t.Fatal(err)
	}
	close(g.released)
	if err := <-updated; err == nil {
		t.Fatal("the update should have failed")
	}
	checkRevokedOnServers(t, env, b, pub, key)
}

// holds holds the pushes numbered in it (1-based) until each is released.
type holds struct {
	provision.Resolver
	n       atomic.Int32
	at      map[int32]chan struct{}
	reached chan string
}

func (h *holds) Update(ctx context.Context, token string) (provision.PushResult, error) {
	if ch, ok := h.at[h.n.Add(1)]; ok {
		h.reached <- token
		<-ch
	}
	return h.Resolver.Update(ctx, token)
}

// TestAfterPushRepushLandsLast: A's push of v1 is slow; B stores and pushes
// v2 over it. A's afterPush finds v2 and pushes it, slowly too; B revokes a
// key meanwhile (v3). A's push of v2 lands last and nothing reads the store
// after it: the servers keep v2, without the revocation.
func TestAfterPushRepushLandsLast(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	h := &holds{at: map[int32]chan struct{}{2: make(chan struct{}), 3: make(chan struct{})}, reached: make(chan string, 1)}
	a, _ := kvDomain(t, env, func(r provision.Resolver) provision.Resolver { h.Resolver = r; return h })
	b, _ := kvDomain(t, env, nil)
	ctx := context.Background()
	pub, updated := createThenUpdate(t, a, "v1")
	<-h.reached // A's v1 stored, its push under way
	waitAccount(t, b, pub)
	if _, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Description: ptr("v2")}); err != nil {
		t.Fatal(err)
	}
	close(h.at[2])
	<-h.reached // A's afterPush pushes v2
	key := newUserKey()
	if _, err := b.RevokeUser(ctx, api.RevokeUserRequest{Account: pub, User: key}); err != nil {
		t.Fatal(err)
	}
	close(h.at[3])
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
	checkRevokedOnServers(t, env, b, pub, key)
}

// raceUser runs hook once, right after the first read of key's record
// (which finds none), as a create of the same key landing there would.
type raceUser struct {
	provision.Store
	key   string
	armed atomic.Bool
	hook  func()
}

func (r *raceUser) User(ctx context.Context, pub string) (provision.User, error) {
	u, err := r.Store.User(ctx, pub)
	if pub == r.key && r.armed.CompareAndSwap(true, false) {
		r.hook()
	}
	return u, err
}

// TestRevokeRacingCreateInOtherAccount: a revoke of key K in account "b"
// reads K's record (none yet); a create of K in account "a" lands; the
// revoke's record of a revoked key then conflicts. It must answer as when
// it finds the record first (K belongs to "a"), not that K is revoked:
// K stays valid in "a".
func TestRevokeRacingCreateInOtherAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ru := &raceUser{Store: d.store}
	svc, err := provision.New(provision.Config{Operator: d.op, Store: ru, Resolver: d.rc, Protected: []string{env.Init.ServiceAccount}, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	kp, _ := nkeys.CreateUser()
	key, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	var created *api.CreateUserReply
	ru.key = key
	ru.hook = func() {
		var err error
		created, err = svc.CreateUser(ctx, api.CreateUserRequest{Account: "a", Name: "k", PublicKey: key})
		if err != nil {
			t.Errorf("create of K in a: %v", err)
		}
	}
	ru.armed.Store(true)
	rev, err := svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "b", User: key})
	if created == nil {
		t.Fatal("the create did not run")
	}
	if err == nil {
		creds := writeCreds(t, api.User{Name: "k", Creds: provision.FormatCreds(created.User.JWT, seed)})
		t.Fatalf("revoke of %s answered success (revoked=%s in %s) for a key issued meanwhile in account a (it connects: %v)", key, rev.Revoked, rev.Account.Name, connects(env, creds))
	}
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "belongs to account") {
		t.Fatalf("revoke of a key issued meanwhile in another account: %v, want ErrInvalid naming its account", err)
	}
}

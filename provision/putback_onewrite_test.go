package provision_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// crashAfterChange is a staleUsers that, once armed for an account, runs
// a hook right after the first write of it (the change's own) and fails
// every write of it after the first keep: the instance killed (kill -9)
// once those are stored.
type crashAfterChange struct {
	*staleUsers
	mu      sync.Mutex
	account string
	writes  int
	keep    int
	after   func()
}

var errCrashed = errors.New("the instance was killed")

func (c *crashAfterChange) arm(account string, keep int, after func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.account, c.writes, c.keep, c.after = account, 0, keep, after
}

func (c *crashAfterChange) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	c.mu.Lock()
	n := 0
	if a.PublicKey == c.account {
		c.writes++
		n = c.writes
	}
	keep, after := c.keep, c.after
	c.mu.Unlock()
	if n > keep {
		return 0, errCrashed
	}
	got, err := c.staleUsers.UpdateAccount(ctx, a, rev)
	if n == 1 && err == nil && after != nil {
		after()
	}
	return got, err
}

// misfitSetup is instances a and b over one bucket, b's store a
// crashAfterChange over a staleUsers, and account acme created on a with
// role "device" as "telemetry.{{name()}}.>", b's reads of its users
// frozen (they hold a user issued after this only once b's change is
// stored: SeenThrough), then user d1 tagged "site:*" issued on a, which
// a change of the role to bySite does not fit.
type misfitSetup struct {
	a, b *provision.Service
	st   *crashAfterChange
	kv   *kvstore.Store     // b's store, under st
	rc   provision.Resolver // instance a's
	pub  string             // acme's
	d1   *api.CreateUserReply
}

func newMisfitSetup(t *testing.T) *misfitSetup {
	t.Helper()
	ctx := context.Background()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	s := &misfitSetup{st: &crashAfterChange{staleUsers: &staleUsers{}}}
	s.a, _ = kvDomainOf(t, env, "a", func(r provision.Resolver) provision.Resolver {
		s.rc = r
		return r
	})
	s.b, _ = kvDomainOf(t, env, "b", nil, func(c *provision.Config) {
		s.kv = c.Store.(*kvstore.Store)
		s.st.Store = s.kv
		c.Store = s.st
	})
	acc, err := s.a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{"telemetry.{{name()}}.>"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.pub = acc.Account.PublicKey
	if err := s.st.freeze(ctx, s.pub); err != nil {
		t.Fatal(err)
	}
	if s.d1, err = s.a.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "d1", Tags: []string{"site:*"}, Role: "device"}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPutBackStoresItsRevocationsInOneWrite: a role change refused once
// stored (instance a's user tagged "site:*" does not fit
// "telemetry.{{tag(site)}}.>") is put back to "telemetry.{{name()}}.>",
// under which a user named "*" that instance a issued while the change
// stood gets "telemetry.*.>". Its revocation was a second store write
// after the put-back's: an instance killed between the two left the
// put-back in the store without it, and any instance's reconciler pushed
// it, the user valid with every device's subjects. The put-back that is
// stored revokes it.
func TestPutBackStoresItsRevocationsInOneWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newMisfitSetup(t)
	a, b, st, kv, pub, first := s.a, s.b, s.st, s.kv, s.pub, s.d1
	var wide *api.CreateUserReply
	st.arm(pub, 2, func() {
		// Instance a issues a user named "*" under b's change, which
		// does not use the name, and b's reads of users hold it before
		// b checks its users again.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			got, err := a.GetAccount(ctx, api.AccountRequest{Account: pub})
			if err == nil && templateOf(got.Account.JWT, "device") == bySite {
				break
			}
		}
		var err error
		if wide, err = a.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "*", Tags: []string{"site:b"}, Role: "device"}); err != nil {
			t.Errorf("instance a's user named \"*\" under the version that does not use the name: %v", err)
			return
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			users, err := kv.Users(ctx, pub)
			if err == nil && slices.ContainsFunc(users, func(u provision.User) bool { return u.PublicKey == wide.User.PublicKey }) {
				return
			}
		}
		t.Errorf("instance b's reads of users do not hold instance a's user %s", wide.User.PublicKey)
	})
	_, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: pub, Roles: map[string]*api.Role{"device": {Pub: &jwt.Permission{Allow: []string{bySite}}}}})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("instance b's change of the role with user %s active: %v, want refused (400)", first.User.PublicKey, err)
	}
	if wide == nil {
		t.Fatal("instance a's user was not issued while b's change stood")
	}
	got, err := kv.AccountLatest(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if templateOf(got.JWT, "device") != "telemetry.{{name()}}.>" {
		t.Fatalf("the store holds template %q, want the version put back", templateOf(got.JWT, "device"))
	}
	c, err := jwt.DecodeAccountClaims(got.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Revocations.IsRevoked(wide.User.PublicKey, time.Unix(c.IssuedAt, 0)) {
		t.Errorf("the put-back stored before the instance was killed does not revoke user %s named \"*\": any reconciler pushes it, and the user gets telemetry.*.>", wide.User.PublicKey)
	}
	if c.Revocations.IsRevoked(first.User.PublicKey, time.Unix(c.IssuedAt, 0)) {
		t.Errorf("the put-back revokes user %s, which fits it", first.User.PublicKey)
	}
}

package provision_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// countPushes counts the pushes of account JWTs.
type countPushes struct {
	provision.Resolver
	n atomic.Int64
}

func (r *countPushes) Update(ctx context.Context, token string) (provision.PushResult, error) {
	r.n.Add(1)
	return r.Resolver.Update(ctx, token)
}

// TestUpdateToWhatTheAccountHasMakesNoVersion: an update that asks for
// what the account already has (automation applying its desired state
// again) answers with the account as it is: the same JWT, no new
// revision in the store, and that JWT pushed again, since the store's
// version may be on no server yet (here a server holds an older one).
// Before, each made a version differing only in its issue time: the
// account's one version a second, an audit event. An update that gives no
// field at all is refused (400) and changes nothing.
func TestUpdateToWhatTheAccountHasMakesNoVersion(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	cp := &countPushes{}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { cp.Resolver = r; return cp })
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Tags: []string{"tier:gold"}})
	if err != nil {
		t.Fatal(err)
	}
	conn := int64(5)
	desc := "the acme tenant"
	req := api.UpdateAccountRequest{Account: "acme", Limits: &api.AccountLimits{Conn: &conn}, Description: &desc, Tags: &[]string{"tier:gold"}}
	first, err := d.svc.UpdateAccount(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	a, err := d.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	// The servers hold an older version (the store's newest may not have
	// reached them: a lost acknowledgement, a paused instance).
	if _, err := d.rc.Update(ctx, created.Account.JWT); err != nil {
		t.Fatal(err)
	}
	pushes := cp.n.Load()

	again, err := d.svc.UpdateAccount(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.Account.JWT != first.Account.JWT {
		c1, _ := jwt.DecodeAccountClaims(first.Account.JWT)
		c2, _ := jwt.DecodeAccountClaims(again.Account.JWT)
		t.Errorf("an update to what the account has answered a new JWT (iat %d, was %d)", c2.IssuedAt, c1.IssuedAt)
	}
	if len(again.Resolver) == 0 {
		t.Errorf("an update to what the account has answered no server replies: the current version was not pushed again")
	}
	if n := cp.n.Load() - pushes; n != 1 {
		t.Errorf("an update to what the account has pushed %d times, want once (the current version again)", n)
	}
	b, err := d.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision != a.Revision || b.JWT != a.JWT {
		t.Errorf("an update to what the account has stored revision %d (was %d)", b.Revision, a.Revision)
	}
	for i, cpy := range lookupAll(t, d.rc, a.PublicKey) {
		if cpy != first.Account.JWT {
			t.Errorf("server %d holds another JWT than the one the first update answered", i)
		}
	}

	// One value different: a version.
	conn = 6
	changed, err := d.svc.UpdateAccount(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if changed.Account.JWT == first.Account.JWT || len(changed.Resolver) == 0 {
		t.Errorf("an update of the connection limit from 5 to 6 made no version (resolver %v)", changed.Resolver)
	}

	// A rotate that only removes retired keys, with none retired.
	no := false
	rot, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme", Rotate: &no, RevokeOld: true})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Account.JWT != changed.Account.JWT || len(rot.SigningKeys) != 1 {
		t.Errorf("revoke_old without rotate, with no retired key, made a version or lost keys (%v)", rot.SigningKeys)
	}

	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "nothing to change") {
		t.Errorf("an update with no field: %v, want invalid saying there is nothing to change", err)
	}
	c, err := d.store.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if c.JWT != changed.Account.JWT {
		t.Errorf("an update with no field changed the account")
	}
}

// TestUpdateToWhatAnotherInstanceReplacedIsMade: on a shared store, an
// update that matches this instance's cached copy but not the version
// another instance stored since is made, on the latest version: answered
// unchanged from the cache, it left the other instance's value in place
// while telling its caller the account has the value it asked for.
func TestUpdateToWhatAnotherInstanceReplacedIsMade(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	a, st := kvDomainOf(t, env, "a", nil)
	sr := &laggingMirror{} // stale set by hand below, never armed
	b, _ := kvDomainOf(t, env, "b", nil, func(c *provision.Config) {
		sr.Store = c.Store.(*kvstore.Store)
		c.Store = sr
	})
	ctx := context.Background()
	if _, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	set := func(svc *provision.Service, n int64) *api.AccountReply {
		t.Helper()
		r, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Limits: &api.AccountLimits{Conn: &n}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	set(b, 5)
	old, err := st.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	set(a, 6)
	sr.stale.Store(&old) // b's mirror has not seen a's version yet
	r := set(b, 5)
	c, err := jwt.DecodeAccountClaims(r.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := st.AccountLatest(ctx, old.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := jwt.DecodeAccountClaims(latest.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.Conn != 5 || lc.Limits.Conn != 5 {
		t.Fatalf("b set the connection limit to 5 after a set it to 6: b answered %d, the store holds %d", c.Limits.Conn, lc.Limits.Conn)
	}
}

// TestUpdateToWhatTheAccountHasAfterTheSigningKeyChanged: an account
// signed with another operator signing key than the one in use (an
// instance restarted on the new key before the re-sign reached the
// account) is not what a new version would be: an update to what it has
// is made, signed with the key in use, and pushed.
func TestUpdateToWhatTheAccountHasAfterTheSigningKeyChanged(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	nextOp, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	desc := "kept"
	d := newDomain(t, env, nil)
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Description: desc}); err != nil {
		t.Fatal(err)
	}
	d.stop()
	d = newDomain(t, env, nil, func(c *provision.Config) { c.Operator = nextOp })
	defer d.stop()
	out, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	if iss := mustClaims(t, out.Account.JWT).Issuer; iss != nextOp.SignerKey {
		t.Errorf("an update to what the account has, signed with the old operator signing key, answered a JWT signed by %s, not the key in use %s", iss, nextOp.SignerKey)
	}
	if len(out.Resolver) == 0 {
		t.Errorf("the update pushed nothing")
	}
}

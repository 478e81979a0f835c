package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// killedBeforeBackground stands for an instance killed (kill -9) right
// after it answered: the user records it would have written in the
// background, after the reply, never reach the bucket. Records written
// before the reply (durable) land as they do.
type killedBeforeBackground struct {
	provision.Store
}

func (k killedBeforeBackground) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if !durable {
		return nil
	}
	return k.Store.AddUser(ctx, u, durable)
}

// TestSelfServiceQuotaHoldsPastAKill: a tenant's self-service user whose
// key the service made (the tenant sent an xkey) was recorded in the
// background, after the reply: an instance killed in that window left a
// user with delivered creds and no record, which no instance counted
// against the account's quota (the tenant issued one more, and one more
// after each such kill) and the tenant could not revoke (404: no
// self-service user). A self-service user is recorded before the reply.
func TestSelfServiceQuotaHoldsPastAKill(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	selfOn := func(c *provision.Config) { c.ServiceAccount = env.Init.ServiceAccount }
	a, _ := kvDomainOf(t, env, "a", nil, selfOn, func(c *provision.Config) { c.Store = killedBeforeBackground{c.Store} })
	b, stB := kvDomainOf(t, env, "b", nil, selfOn)
	ctx := context.Background()
	acc, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{"device": {}}, SelfService: true, SelfServiceQuota: 1})
	if err != nil {
		t.Fatal(err)
	}
	tenant := provision.Tenant{Account: acc.Account.PublicKey}
	xk, _ := nkeys.CreateCurveKeys()
	xpub, _ := xk.PublicKey()
	out, err := a.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d1", Role: "device", XKey: xpub})
	if err != nil {
		t.Fatalf("the first self-service user: %v", err)
	}
	if out.User.Sealed == nil {
		t.Fatalf("the tenant got no sealed creds: %+v", out.User)
	}
	// Instance a is gone; b answers the tenant from now on.
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := stB.User(ctx, out.User.PublicKey); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance b never sees a record of user %s, issued (creds delivered) through self-service on instance a before it was killed: the quota does not count it", out.User.PublicKey)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := b.SelfCreateUser(ctx, tenant, api.SelfCreateUserRequest{Name: "d2", Role: "device", PublicKey: newUserKey()}); !errors.Is(err, provision.ErrForbidden) {
		t.Errorf("a second self-service user past a quota of one: %v, want refused (quota)", err)
	}
	if _, err := b.SelfRevokeUser(ctx, tenant, api.SelfRevokeUserRequest{User: out.User.PublicKey}); err != nil {
		t.Errorf("the tenant revokes the user it issued: %v", err)
	}
}

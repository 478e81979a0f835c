package provision_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestDeleteWaitsWhileTwoServersShareAName: two servers answer under one
// server_name (nats-server refuses it on routes and gateways, not on leaf
// connections). The confirmations keep one entry per name, and a request
// waits for one instance under it: the one that answered at once made the
// tombstone final while the other, slower, refused the disabled version
// and held the account live. The delete waits while the name is shared.
func TestDeleteWaitsWhileTwoServersShareAName(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	acct, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const name = "dup"
	for _, f := range []struct {
		id    string
		delay time.Duration
		reply string
	}{
		// One stores everything at once.
		{"NDUPINSTANCEA", 0, `"data":{"code":200,"message":"jwt updated"}`},
		// The other, slower, refuses: it keeps the live version.
		{"NDUPINSTANCEB", 500 * time.Millisecond, `"error":{"code":500,"description":"jwt update resulted in error - disk full"}`},
	} {
		fakeServer(t, env, name, f.id, f.delay, map[string]string{
			resolver.SubjectClaimsUpdate: f.reply,
			resolver.SubjectClaimsDelete: f.reply,
		})
	}
	if err := d.rc.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.rc.Servers(), func(s provision.Server) bool { return s.Name == name && s.Up }) {
		t.Fatalf("the resolver client does not count %s up: %+v", name, d.rc.Servers())
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: acct.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase == string(provision.PhaseDeleted) || !slices.Contains(rep.Waiting, name) {
		t.Fatalf("delete answered phase %s waiting %q while two servers answer as %s, one of which refused the disabled version; want it disabled, waiting for %s", rep.Phase, rep.Waiting, name, name)
	}
	// A pass does not finish it either.
	time.Sleep(time.Second)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Logf("pass: %v", err)
	}
	a, err := d.store.Account(ctx, acct.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if a.Phase == provision.PhaseDeleted {
		t.Fatalf("after a pass the tombstone is final while two servers answer as %s", name)
	}
}

// fakeServer answers as a server named name with id (a system user of
// env's): the resolver client's ping, after a fifth of delay, and each
// subject of bodies after delay, with a reply holding its body (the
// reply's "data" or "error" member).
func fakeServer(t *testing.T, env *provtest.Env, name, id string, delay time.Duration, bodies map[string]string) {
	t.Helper()
	fake := env.Connect(t, provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "dup-"+id, nil))
	respond := func(m *nats.Msg, data []byte, delay time.Duration) {
		if delay == 0 {
			_ = m.Respond(data)
			return
		}
		reply := m.Reply
		time.AfterFunc(delay, func() { _ = fake.Publish(reply, data) })
	}
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		respond(m, fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, id), delay/5)
	}); err != nil {
		t.Fatal(err)
	}
	for subj, body := range bodies {
		if _, err := fake.Subscribe(subj, func(m *nats.Msg) {
			respond(m, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},%s}`, name, id, body), delay)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
}

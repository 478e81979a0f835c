package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestPassGoesOnPastAServerThatRefusesList: one server answering LIST
// with an error (or with a reply that says nothing of what it holds)
// failed the whole pass: nothing was checked or repaired on any server,
// pass after pass. The pass goes on with the others' lists, as for a
// server that did not answer in time: that server is not taken to hold
// nothing, so no tombstone is dropped.
func TestPassGoesOnPastAServerThatRefusesList(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	v1, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a later iat
	desc := "v2"
	v2, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Description: &desc})
	if err != nil {
		t.Fatal(err)
	}
	// Drift: the server holds the older version again.
	if _, err := d.rc.Update(ctx, v1.Account.JWT); err != nil {
		t.Fatal(err)
	}
	refusingServer(t, env, d, resolver.SubjectClaimsList, "list request error")
	rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatalf("a pass beside a server that refuses LIST: %v", err)
	}
	if rep.Pushed < 1 {
		t.Fatalf("a pass beside a server that refuses LIST pushed %d accounts, want acme's current version pushed: %+v", rep.Pushed, rep)
	}
	if got, err := d.rc.Lookup(ctx, v2.Account.PublicKey); err != nil || got != v2.Account.JWT {
		t.Fatalf("after the pass the server holds %.40q (%v), want the current version", got, err)
	}
}

// refusingServer adds a fake server (a system-account user) that answers
// the server ping as "fake" and every request on subject with an error
// reply carrying desc, as a server whose claims or monitoring request
// fails does, and waits until d's resolver client counts it up.
func refusingServer(t *testing.T, env *provtest.Env, d *domain, subject, desc string) {
	t.Helper()
	fake := env.Connect(t, provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "fake", nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		m.Respond([]byte(`{"name":"fake","host":"127.0.0.1","id":"NFAKE"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(subject, func(m *nats.Msg) {
		m.Respond([]byte(`{"server":{"name":"fake","id":"NFAKE"},"error":{"code":500,"description":"` + desc + `"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for known := false; !known; {
		if time.Now().After(deadline) {
			t.Fatal("the resolver client never learned the fake server")
		}
		d.rc.Discover(context.Background())
		for _, srv := range d.rc.Servers() {
			known = known || srv.Name == "fake" && srv.Up
		}
	}
}

package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestUntrustedSignerNamedPastAServerThatRefusesVarz: one server answering
// VARZ with an error threw away every other server's answer, so an
// instance whose operator signing key the servers do not trust had its
// problem neither named in prov.status nor logged, pass after pass, for as
// long as that one server kept refusing. The servers that answered count,
// as when a server does not answer in time.
func TestUntrustedSignerNamedPastAServerThatRefusesVarz(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()

	fake := env.Connect(t, provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "fake", nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		m.Respond([]byte(`{"name":"fake","host":"127.0.0.1","id":"NFAKE"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(resolver.SubjectServerVarz, func(m *nats.Msg) {
		m.Respond([]byte(`{"server":{"name":"fake","id":"NFAKE"},"error":{"code":500,"description":"varz request error"}}`))
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
		d.rc.Discover(ctx)
		for _, srv := range d.rc.Servers() {
			known = known || srv.Name == "fake" && srv.Up
		}
	}

	// The same operator, a signing key its JWT does not list.
	stray, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	strayPub, _ := stray.PublicKey()
	op := *d.op
	op.Signer, op.SignerKey = stray, strayPub
	svc, err := provision.New(provision.Config{Operator: &op, Store: d.store, Resolver: d.rc, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	st, err := svc.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Problem, strayPub) || !strings.Contains(st.Problem, env.Server.Name()) {
		t.Errorf("status of an instance whose key the servers do not trust, beside a server that refuses VARZ: problem %q, want the key and the server named", st.Problem)
	}
	if strings.Contains(st.Problem, "fake") {
		t.Errorf("status names the server that refused VARZ as not trusting the key: %q", st.Problem)
	}
}

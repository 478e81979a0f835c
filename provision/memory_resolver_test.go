package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// memoryResolverNodes starts two routed servers of one deployment: node-a
// with a full resolver, node-b with a MEMORY resolver (one a NATS operator
// may run beside the full ones, with the same operator): it answers the
// server ping, but no claims request, as it subscribes to none.
func memoryResolverNodes(t *testing.T) (*bootstrap.Result, []*clusterNode) {
	t.Helper()
	return nodesWithResolverB(t, bootstrap.Options{}, "\nresolver: MEMORY")
}

// TestMemoryResolverServer: node-b runs a MEMORY resolver, which answers
// no claims request (no push, no DELETE, no LIST, no LOOKUP). It was
// counted as a server whose resolver stores what is pushed: every push
// waited the whole resolver timeout for it, the reconciler pushed every
// account again each pass, and a delete stayed disabled for ever, waiting
// for node-b to confirm it. Once it has shown that it answers no claims
// request, it is not waited for (as a cache resolver is not).
func TestMemoryResolverServer(t *testing.T) {
	t.Parallel()
	res, nodes := memoryResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()

	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	// The first request may wait for node-b to learn that it answers
	// nothing; the next ones must not. Once the client knows it (polled,
	// rather than a fixed 2.5 s), nothing is left to learn.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		known := false
		for _, s := range d.rc.Servers() {
			known = known || s.Name == "node-b" && s.NoResolver
		}
		if known {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-b not known to answer no claims request after the first create: %+v", d.rc.Servers())
		}
	}
	start := time.Now()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a create took %s: it waited the resolver timeout for node-b, which answers no push", took)
	}
	pub := acc.Account.PublicKey
	r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Pushed != 0 || r.Failed != 0 {
		t.Errorf("a pass after the creates: pushed %d, failed %d; want nothing to do", r.Pushed, r.Failed)
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) || len(rep.Waiting) != 0 {
		t.Errorf("delete: phase %s waiting %v, want deleted (node-b holds nothing to wait for)", rep.Phase, rep.Waiting)
	}
}

// TestStatusNamesAServerWithNoResolver: once node-b has shown that it
// answers no claims request, prov.status listed it as an ordinary up
// server; only a WARN log told an operator that it gets no account. Its
// line now says so (resolver "none").
func TestStatusNamesAServerWithNoResolver(t *testing.T) {
	t.Parallel()
	res, nodes := memoryResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()

	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	var st *api.StatusReply
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if st, err = d.svc.Status(ctx, api.StatusRequest{}); err != nil {
			t.Fatal(err)
		}
		var b api.ServerStatus
		for _, srv := range st.Servers {
			if srv.Name == nodes[1].name {
				b = srv
			}
		}
		if b.Resolver == "none" {
			for _, srv := range st.Servers {
				if srv.Name != b.Name && srv.Resolver != "" {
					t.Errorf("full resolver %s: resolver %q, want none said", srv.Name, srv.Resolver)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status still lists node-b as an ordinary server: %+v", st.Servers)
		}
		// A push finds it silent, the next ping finds it up.
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTombstoneDroppedBesideAServerWithNoResolver: node-b runs a MEMORY
// resolver, which answers no LIST. A pass whose LIST missed a server keeps
// every tombstone (the server may hold the account), and node-b missed
// every LIST: the tombstone of a finished delete was kept for good past
// tombstone_retention, and LOOKUPed by every pass. node-b holds nothing
// pushed; once it has shown that it answers no claims request, its
// missing LIST keeps nothing (once it has shown it for as long as a
// down server stays known: 2s here).
func TestTombstoneDroppedBesideAServerWithNoResolver(t *testing.T) {
	t.Parallel()
	res, nodes := memoryResolverNodes(t)
	d := newClusterDomain(t, res, nodes, 2*time.Second, nil, func(cfg *provision.Config) { cfg.TombstoneRetention = time.Second })
	ctx := context.Background()

	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	// node-b shows that it answers no claims request.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var none bool
		for _, srv := range d.rc.Servers() {
			none = none || srv.Name == nodes[1].name && srv.NoResolver
		}
		if none {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-b not known to have no resolver")
		}
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete: phase %s, want deleted", rep.Phase)
	}
	time.Sleep(2100 * time.Millisecond)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if tomb, err := d.store.Account(ctx, pub); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("tombstone past its retention after a pass: phase %q, error %v; want it dropped", tomb.Phase, err)
	}
}

package provision_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// TestTombstoneKeptForAServerRestartedAfterItsList: acme is deleted on
// node-a and node-b, its tombstone past its retention. The pass's LIST
// hears from both, neither holding it; then node-b restarts from an old
// disk holding acme live, before the pass decides whether the tombstone
// may go. The LIST node-b's old instance sent says nothing of what the new
// one holds: counted by name, "every server listed and none holds it"
// held, the tombstone was dropped, and node-b's resolver sync spread the
// deleted account back, an orphan left alone. The tombstone must be kept,
// and the next pass delete acme from node-b.
func TestTombstoneKeptForAServerRestartedAfterItsList(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	b := nodes[1]
	var rc *resolver.Client
	var pub, live string
	al := &afterList{hook: func() {
		b.srv.Stop()
		waitServers(t, rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
		if err := os.WriteFile(filepath.Join(resolverDir(t, b), pub+".jwt"), []byte(live), 0o600); err != nil {
			t.Fatal(err)
		}
		b.start()
		waitServers(t, rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	}}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { al.Resolver = r; return al },
		func(cfg *provision.Config) { cfg.TombstoneRetention = time.Nanosecond })
	rc = d.rc
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live = acc.Account.PublicKey, acc.Account.JWT
	if rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil || rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete: %v %+v", err, rep)
	}
	time.Sleep(1100 * time.Millisecond) // past the retention
	al.armed.Store(true)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if al.armed.Load() {
		t.Fatal("the pass did not list the servers")
	}
	if _, err := d.store.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) {
		t.Fatal("the tombstone was dropped although node-b restarted after its LIST, holding acme live")
	} else if err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	copies, err := rc.LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		if cp == live {
			t.Errorf("a server holds the deleted account live after the next pass (copies %d)", len(copies))
		}
	}
}

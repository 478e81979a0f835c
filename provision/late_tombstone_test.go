package provision_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestTombstoneKeptForAServerThatAnswersLate: acme was deleted while only
// node-a ran; node-b comes back from an old disk holding acme's live
// version, on a slow route (its answers come about 600 ms after node-a's).
// An instance just started knew only node-a when its first pass began: the
// LIST waited for node-a alone, "every server answered LIST" held, and the
// tombstone, past its retention, was dropped while node-b still held the
// account, which from then on was only reported as an orphan. The pass
// must hear from node-b before it drops the tombstone; the next pass then
// deletes acme from node-b.
func TestTombstoneKeptForAServerThatAnswersLate(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, dir string, routes []string) *natsembed.Server {
		conf := res.Server
		conf.ServerName, conf.Listen = name, "127.0.0.1:-1"
		conf.ResolverDir, conf.JetStreamDir, conf.AllowDelete = dir, "", true
		conf.Cluster = &bootstrap.ClusterConf{Name: "test-cluster", Listen: "127.0.0.1:-1", Routes: routes}
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, conf.Render(), 0o600); err != nil {
			t.Fatal(err)
		}
		srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	ctx := context.Background()
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	connect := func(url string) *nats.Conn {
		nc, err := nats.Connect(url, nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	service := func(nc *nats.Conn) (*provision.Service, *resolver.Client) {
		rc, err := resolver.New(ctx, nc, resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		svc, err := provision.New(provision.Config{Operator: op, Store: st, Resolver: rc, Protected: []string{res.ServiceAccount}, Logger: provtest.Logger(t),
			TombstoneRetention: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(svc.Close)
		return svc, rc
	}

	// acme is created and deleted with node-a alone.
	a := start("node-a", filepath.Join(t.TempDir(), "jwt"), nil)
	first, _ := service(connect(a.URL()))
	acc, err := first.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live := acc.Account.PublicKey, acc.Account.JWT
	if rep, err := first.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil || rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete: %v %+v", err, rep)
	}

	// node-b returns from an old disk with acme's live version.
	dirB := filepath.Join(t.TempDir(), "jwt")
	if err := os.MkdirAll(dirB, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirB, pub+".jwt"), []byte(live), 0o600); err != nil {
		t.Fatal(err)
	}
	b := start("node-b", dirB, []string{"nats-route://" + provtest.SlowLink(t, a.ClusterAddr().String(), 300*time.Millisecond)})
	deadline := time.Now().Add(10 * time.Second)
	for a.NumRoutes() < 1 || b.NumRoutes() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("node-a and node-b do not route to each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc := connect(a.URL())
	deadline = time.Now().Add(10 * time.Second)
	for pingCount(t, nc, 2, 2*time.Second) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("node-b does not answer a ping")
		}
	}
	time.Sleep(1100 * time.Millisecond) // past the retention

	// A new instance, just started: its resolver client knows node-a only.
	svc, rc := service(nc)
	known := rc.Servers()
	if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Account(ctx, pub); errors.Is(err, provision.ErrNotFound) {
		lists, _ := rc.List(ctx)
		t.Fatalf("the tombstone was dropped while node-b holds acme (servers known at the start %+v; LIST now %v)", known, lists)
	} else if err != nil {
		t.Fatal(err)
	}
	// The next pass, with node-b known, deletes acme from it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
		lists, err := rc.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lists["node-b"]; ok && !slices.Contains(lists["node-b"], pub) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("acme is still on node-b: %v", lists)
		}
	}
}

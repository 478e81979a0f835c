package provision_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
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

// clusterNode is one server of a routed test cluster, restartable from its
// configuration file with its resolver directory (its disk).
type clusterNode struct {
	name string
	conf string
	srv  *natsembed.Server
	t    *testing.T
}

func (n *clusterNode) start() {
	n.t.Helper()
	srv, err := natsembed.Start(n.conf, natsembed.Options{Port: -1})
	if err != nil {
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	n.t.Cleanup(srv.Stop)
	n.srv = srv
}

// startNodes starts count routed servers (node-a, node-b, ...) of the
// deployment res, each with a resolver directory of its own, and waits
// until each routes to all others.
func startNodes(t *testing.T, res *bootstrap.Result, count int) []*clusterNode {
	t.Helper()
	var nodes []*clusterNode
	for i := range count {
		conf := res.Server
		conf.ServerName = fmt.Sprintf("node-%c", 'a'+i)
		conf.Listen = "127.0.0.1:-1"
		conf.ResolverDir = filepath.Join(t.TempDir(), "jwt")
		conf.JetStreamDir = ""
		// allow_delete as init made it: off with NoDelete.
		conf.Cluster = &bootstrap.ClusterConf{Name: "test-cluster", Listen: "127.0.0.1:-1"}
		if i > 0 {
			conf.Cluster.Routes = []string{"nats-route://" + nodes[0].srv.ClusterAddr().String()}
		}
		n := &clusterNode{name: conf.ServerName, conf: filepath.Join(t.TempDir(), conf.ServerName+".conf"), t: t}
		if err := os.WriteFile(n.conf, conf.Render(), 0o600); err != nil {
			t.Fatal(err)
		}
		n.start()
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.srv.NumRoutes() < count-1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d routes after 10s, want %d", n.name, n.srv.NumRoutes(), count-1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// clusterDomain is a service with a file store whose resolver client is
// connected to the first node and forgets a server down for forgetAfter.
type clusterDomain struct {
	svc   *provision.Service
	rc    *resolver.Client
	store *filestore.Store
}

func newClusterDomain(t *testing.T, res *bootstrap.Result, nodes []*clusterNode, forgetAfter time.Duration, wrap func(provision.Resolver) provision.Resolver, tune ...func(*provision.Config)) *clusterDomain {
	t.Helper()
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	nc, err := nats.Connect(nodes[0].srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix),
		nats.ReconnectBufSize(-1), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The servers answer across the routes once the system account's
	// interest has spread: wait until the client knows every one.
	var rc *resolver.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc, err = resolver.New(context.Background(), nc, resolver.Options{Timeout: 2 * time.Second, ForgetAfter: forgetAfter, Logger: provtest.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		if up(rc) == len(nodes) {
			break
		}
		rc.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the resolver client does not see %d servers", len(nodes))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() { rc.Close() })
	var r provision.Resolver = rc
	if wrap != nil {
		r = wrap(rc)
	}
	cfg := provision.Config{Operator: op, Store: st, Resolver: r, Protected: []string{res.ServiceAccount}, Logger: provtest.Logger(t)}
	for _, f := range tune {
		f(&cfg)
	}
	svc, err := provision.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &clusterDomain{svc: svc, rc: rc, store: st}
}

// up counts the servers a resolver client knows to be up.
func up(rc *resolver.Client) int {
	n := 0
	for _, s := range rc.Servers() {
		if s.Up {
			n++
		}
	}
	return n
}

// waitServers waits until the client knows exactly the named servers, each
// up or down as given.
func waitServers(t *testing.T, rc *resolver.Client, limit time.Duration, what string, want map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := map[string]bool{}
		for _, s := range rc.Servers() {
			got[s.Name] = s.Up
		}
		same := len(got) == len(want)
		for name, isUp := range want {
			if u, ok := got[name]; !ok || u != isUp {
				same = false
			}
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the client knows %v, want %v", what, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// beforeFirstDelete runs hook once, before the first DELETE is sent.
type beforeFirstDelete struct {
	provision.Resolver
	done atomic.Bool
	hook func()
}

func (r *beforeFirstDelete) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	if r.done.CompareAndSwap(false, true) {
		r.hook()
	}
	return r.Resolver.Delete(ctx, token)
}

// TestDeleteSentAgainToAServerThatMissedIt: three servers; node-c confirms
// an account's disabled version, then goes down just before the DELETE.
// The delete waits for it until the client forgets it (server_forget_after),
// then finishes without it: the tombstone says deleted. node-c comes back
// from its disk, holding the disabled version. While the tombstone is kept,
// the reconciler must send the DELETE again; otherwise node-c's resolver
// sync spreads the account back to every server, and the tombstone, on a
// server for good, is never dropped.
func TestDeleteSentAgainToAServerThatMissedIt(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 3)
	c := nodes[2]
	const forget = time.Second
	var rc *resolver.Client
	bd := &beforeFirstDelete{hook: func() {
		c.srv.Stop()
		waitServers(t, rc, 5*time.Second, "node-c down", map[string]bool{"node-a": true, "node-b": true, "node-c": false})
	}}
	d := newClusterDomain(t, res, nodes, forget, func(r provision.Resolver) provision.Resolver { bd.Resolver = r; return bd })
	rc = d.rc
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) || !slices.Equal(rep.Waiting, []string{"node-c"}) {
		t.Fatalf("delete: phase %s waiting %v, want disabled waiting for node-c", rep.Phase, rep.Waiting)
	}
	// Past server_forget_after the delete finishes without node-c.
	waitServers(t, rc, 5*time.Second, "node-c forgotten", map[string]bool{"node-a": true, "node-b": true})
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	tomb, err := d.store.Account(ctx, pub)
	if err != nil || tomb.Phase != provision.PhaseDeleted {
		t.Fatalf("tombstone after the pass: %+v %v, want deleted", tomb.Phase, err)
	}
	// node-c comes back from its disk.
	c.start()
	waitServers(t, rc, 10*time.Second, "node-c back", map[string]bool{"node-a": true, "node-b": true, "node-c": true})
	for i := range 2 {
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d after node-c returned: checked=%d pushed=%d deleted=%d", i, r.Checked, r.Pushed, r.Deleted)
	}
	copies, err := rc.LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, cp := range copies {
		if cp != "" {
			held++
		}
	}
	if held > 0 {
		t.Errorf("%d of %d servers hold the deleted account after two passes (the disabled version node-c kept): the DELETE was not sent again, and resolver sync spreads it back", held, len(copies))
	}
}

// TestTombstoneKeptAfterTheWaitForAServer: node-c is down when an account
// is deleted, holding its live version. The delete waits for node-c until
// the client forgets it (server_forget_after), then finishes without it.
// The tombstone must then be kept for tombstone_retention (here equal to
// server_forget_after, the least the configuration allows) after the
// delete finished, so that it deletes the account again when node-c comes
// back. Counted from when the delete was accepted, the retention had all
// but passed when the delete finished: the tombstone went at once, and
// node-c brought the account back live, an orphan left alone.
func TestTombstoneKeptAfterTheWaitForAServer(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 3)
	c := nodes[2]
	const wait = 3 * time.Second
	d := newClusterDomain(t, res, nodes, wait, nil, func(cfg *provision.Config) { cfg.TombstoneRetention = wait })
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live := acc.Account.PublicKey, acc.Account.JWT
	c.srv.Stop()
	waitServers(t, d.rc, 5*time.Second, "node-c down", map[string]bool{"node-a": true, "node-b": true, "node-c": false})
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) {
		t.Fatalf("delete: phase %s, want disabled (waiting for node-c)", rep.Phase)
	}
	waitServers(t, d.rc, 2*wait, "node-c forgotten", map[string]bool{"node-a": true, "node-b": true})
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if tomb, err := d.store.Account(ctx, pub); err != nil || tomb.Phase != provision.PhaseDeleted {
		t.Fatalf("tombstone after the pass: %+v %v, want deleted", tomb.Phase, err)
	}
	// A pass a second after the delete finished, well within the
	// retention.
	time.Sleep(1100 * time.Millisecond)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	_, terr := d.store.Account(ctx, pub)
	// node-c comes back from its disk, with the live version.
	c.start()
	waitServers(t, d.rc, 10*time.Second, "node-c back", map[string]bool{"node-a": true, "node-b": true, "node-c": true})
	r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	copies, err := d.rc.LookupAll(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range copies {
		if cp == live {
			t.Errorf("a server holds the deleted account live after node-c returned (tombstone: %v; orphans: %v)", terr, r.Orphans)
			break
		}
	}
}

// countDeletes counts the DELETEs sent once on is set.
type countDeletes struct {
	provision.Resolver
	on      atomic.Bool
	deletes atomic.Int32
}

func (r *countDeletes) Delete(ctx context.Context, token string) (provision.PushResult, error) {
	if r.on.Load() {
		r.deletes.Add(1)
	}
	return r.Resolver.Delete(ctx, token)
}

// TestDeleteWaitingForADownServerLeavesTheOthersAlone: node-b confirms an
// account's disabled version, then goes down just before the DELETE, which
// node-a carries out. While node-b is down the delete waits for it, and
// node-a answers the LOOKUP with "": that is what the DELETE it confirmed
// by name wants, not a copy that differs. Taken for one, every pass pushed
// the disabled version to node-a again and sent the DELETE again, until
// server_forget_after (a day). Once node-b is back (holding the disabled
// version on its disk) the delete must finish on both, the account on
// neither.
func TestDeleteWaitingForADownServerLeavesTheOthersAlone(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	b := nodes[1]
	var rc *resolver.Client
	cd := &countDeletes{}
	bd := &beforeFirstDelete{Resolver: cd, hook: func() {
		b.srv.Stop()
		waitServers(t, rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	}}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { cd.Resolver = r; return bd })
	rc = d.rc
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) || !slices.Equal(rep.Waiting, []string{"node-b"}) {
		t.Fatalf("delete: phase %s waiting %v, want disabled waiting for node-b", rep.Phase, rep.Waiting)
	}
	cd.on.Store(true)
	for i := range 3 {
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Pushed != 0 || r.Failed != 0 {
			t.Errorf("pass %d while node-b is down: pushed=%d failed=%d, want nothing pushed (node-a carried out the DELETE)", i, r.Pushed, r.Failed)
		}
	}
	if n := cd.deletes.Load(); n != 0 {
		t.Errorf("the passes sent the DELETE %d times while node-b, the only server that had not carried it out, was down", n)
	}
	if copies := lookupAll(t, rc, pub); len(copies) != 1 || copies[0] != "" {
		t.Errorf("node-a holds %q while node-b is down, want nothing", copies)
	}
	// node-b comes back from its disk, holding the disabled version.
	b.start()
	waitServers(t, rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if tomb, err := d.store.Account(ctx, pub); err != nil || tomb.Phase != provision.PhaseDeleted {
		t.Errorf("tombstone after node-b returned: %v %v, want deleted", tomb.Phase, err)
	}
	for _, cp := range lookupAll(t, rc, pub) {
		if cp != "" {
			t.Errorf("a server holds the deleted account after node-b returned: the DELETE did not reach node-b, and resolver sync spreads it back")
			break
		}
	}
}

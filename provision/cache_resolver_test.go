package provision_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// resolverBlock matches the resolver block of a rendered ServerConf.
var resolverBlock = regexp.MustCompile(`(?s)\nresolver: \{.*?\n\}`)

// TestCacheResolverServer: node-a runs a full resolver, node-b a cache
// resolver (as a leaf or edge server does). A cache resolver answers a
// push ("jwt update cache skipped") but stores nothing and answers no
// LOOKUP: it fetches an account from the full resolvers when it needs it.
// An operator expects it not to be waited for. It was: a delete stayed
// disabled for ever, waiting for node-b to confirm the disabled version,
// and every reconcile pass pushed every account again.
func TestCacheResolverServer(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()

	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	for i := range 2 {
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Pushed != 0 || r.Failed != 0 {
			t.Errorf("pass %d after the create: pushed %d, failed %d; want nothing to do (node-b is a cache resolver)", i, r.Pushed, r.Failed)
		}
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) || len(rep.Waiting) != 0 {
		t.Errorf("delete: phase %s waiting %v, want deleted (a cache resolver is not waited for)", rep.Phase, rep.Waiting)
	}
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if a, err := d.store.Account(ctx, pub); err != nil || a.Phase != provision.PhaseDeleted {
		t.Errorf("after a pass the account is %s (%v), want deleted", a.Phase, err)
	}
}

// TestCacheResolverLearnedDuringAPass: node-b runs a cache resolver and
// restarts: the client counts the new instance as a full resolver until
// its answer to a push says otherwise. The first push of the next pass
// says so; the pass must not go on pushing every other account as if
// node-b were still a full resolver that has not confirmed them (the
// servers it listed when it started).
func TestCacheResolverLearnedDuringAPass(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	const accounts = 24
	for i := range accounts {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acme-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil || r.Pushed != 0 {
		t.Fatalf("pass after the creates: %+v, %v; want nothing pushed", r, err)
	}
	// node-b restarts (as a leaf server does): a new instance.
	oldID := serverID(d.rc, "node-b")
	b.srv.Stop()
	b.start()
	waitRoutes(t, b)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if id := serverID(d.rc, "node-b"); id != "" && id != oldID && up(d.rc) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client did not see node-b's new instance")
		}
	}
	r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The pass works on 8 accounts at once: each may push before the
	// first push's answer is in.
	if r.Pushed > 8 || r.Failed != 0 {
		t.Errorf("pass after node-b restarted: pushed %d of %d accounts, failed %d; want at most the first pushes (one per worker), until one tells node-b runs a cache resolver", r.Pushed, accounts, r.Failed)
	}
}

// serverID returns the ID the client knows a server by, "" if unknown.
func serverID(rc *resolver.Client, name string) string {
	for _, s := range rc.Servers() {
		if s.Name == name && s.Up {
			return s.ID
		}
	}
	return ""
}

// TestDeleteDoesNotWaitForADownCacheResolver: node-b runs a cache resolver
// (a leaf or edge server, often offline) and is down when an account is
// deleted. No delete waits for a cache resolver (it stores nothing pushed):
// the delete must finish, not stay disabled, its DELETE sent again by
// every pass, until the client forgets node-b (server_forget_after).
func TestDeleteDoesNotWaitForADownCacheResolver(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) || len(rep.Waiting) != 0 {
		t.Errorf("delete with the cache resolver down: phase %s waiting %v, want deleted", rep.Phase, rep.Waiting)
	}
}

// cacheResolverNodes starts a deployment of two routed servers, node-a
// with a full resolver and node-b with a cache resolver.
func cacheResolverNodes(t *testing.T) (*bootstrap.Result, []*clusterNode) {
	t.Helper()
	return cacheResolverNodesOf(t, bootstrap.Options{})
}

// cacheResolverNodesOf is cacheResolverNodes of a deployment made with
// opts (a file store in a directory of the test's).
func cacheResolverNodesOf(t *testing.T, opts bootstrap.Options) (*bootstrap.Result, []*clusterNode) {
	t.Helper()
	return nodesWithResolverB(t, opts, "\nresolver: { type: cache, dir: \""+t.TempDir()+"\", ttl: \"1h\", limit: 100 }")
}

// nodesWithResolverB starts node-a and node-b of a deployment made with
// opts (a file store in a directory of the test's), node-b with resolver
// in place of its full resolver block.
func nodesWithResolverB(t *testing.T, opts bootstrap.Options, resolver string) (*bootstrap.Result, []*clusterNode) {
	t.Helper()
	opts.Dir, opts.Store = t.TempDir(), bootstrap.StoreFile
	res, err := bootstrap.Init(opts)
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	restartEdited(t, nodes[1], func(conf string) string { return resolverBlock.ReplaceAllLiteralString(conf, resolver) })
	return res, nodes
}

// waitRoutes waits until node b routes to the other node.
// restartEdited stops node n, rewrites its configuration with edit, which
// must change it (what the edit looks for is not there otherwise), starts
// it again and waits for its route.
func restartEdited(t *testing.T, n *clusterNode, edit func(conf string) string) {
	t.Helper()
	n.srv.Stop()
	raw, err := os.ReadFile(n.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf := edit(string(raw))
	if conf == string(raw) {
		t.Fatalf("%s: the edit finds nothing to change in its configuration", n.conf)
	}
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.start()
	waitRoutes(t, n)
}

func waitRoutes(t *testing.T, b *clusterNode) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); b.srv.NumRoutes() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not route to the other node", b.name)
		}
	}
}

// TestDeleteOnAFullServerBesideACacheResolver: node-a runs a full resolver
// at its limit that holds no version of the account (it lost it: a
// DELETE, an old disk), node-b a cache resolver. node-a refuses the
// disabled version as "jwt store is full", which counts as having
// confirmed it (nothing is there to disable), and node-b answers "jwt
// update cache skipped", as it answers every push of an account it does
// not hold. The delete must go on: a cache resolver's 200 was taken for a
// refusal "for another reason", and the delete failed and was put back,
// each try the same, in any deployment with a leaf or edge server.
func TestDeleteOnAFullServerBesideACacheResolver(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodesOf(t, bootstrap.Options{ResolverLimit: 6})
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	fill := func() {
		t.Helper()
		for i := 0; ; i++ {
			if i == 20 {
				t.Fatal("node-a's resolver never filled up")
			}
			_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("filler-%d-%d", time.Now().UnixNano(), i)})
			if errors.Is(err, provision.ErrRefused) && strings.Contains(err.Error(), "jwt store is full") {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	fill()
	// node-a loses acme, and its place is taken.
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	gc := jwt.NewGenericClaims(op.SignerKey)
	gc.Data["accounts"] = []string{pub}
	token, err := gc.Encode(op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := d.rc.Delete(ctx, token); err != nil {
		t.Fatalf("DELETE of acme on the servers: %v (%+v)", err, r)
	}
	fill()

	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatalf("delete of an account the full node-a does not hold, beside the cache resolver node-b: %v", err)
	}
	if rep.Phase != string(provision.PhaseDeleted) || len(rep.Waiting) != 0 {
		t.Errorf("delete: phase %s waiting %v, want deleted", rep.Phase, rep.Waiting)
	}
}

// TestCacheResolverErrorDoesNotUndoAChange: node-b runs a cache resolver
// that holds an account (a user of it is connected there) and cannot
// write its cache (its disk is full or broken), so it answers the push
// "jwt update cache resulted in error". No version waits for a cache
// resolver (it stores nothing pushed), and node-a stored the change: the
// change must stand. node-b's answer was taken for a refusal, the change
// failed and was put back on every server, so a leaf server with a broken
// disk made every change of an account used there fail, revocations
// included.
func TestCacheResolverErrorDoesNotUndoAChange(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	// The user connects to node-b, which fetches the account and caches it.
	nc, err := nats.Connect(nodes[1].srv.URL(), nats.UserCredentials(writeCreds(t, u.User)), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// node-b's cache cannot be written any more.
	breakCacheDir(t, nodes[1])
	tags := []string{"moved"}
	rep, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: acc.Account.PublicKey, Tags: &tags})
	if err != nil {
		t.Fatalf("update with node-b's cache resolver failing to write: %v", err)
	}
	t.Logf("resolver answers: %+v", rep.Resolver)
	a, err := d.store.Account(ctx, acc.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeAccountClaims(a.JWT)
	if err != nil || !c.Tags.Contains("moved") {
		t.Errorf("the store's version has tags %v (%v), want the update's", c.Tags, err)
	}
}

// TestCacheResolverErrorDoesNotHoldADelete: as
// TestCacheResolverErrorDoesNotUndoAChange, but the account is deleted:
// node-b cannot remove its cached copy either ("deleted 0 accounts,
// failed for 1"). No delete waits for a cache resolver, which holds the
// disabled version at most: the delete must finish. It stayed disabled,
// its DELETE failed by every pass, as long as node-b's disk was broken.
func TestCacheResolverErrorDoesNotHoldADelete(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(nodes[1].srv.URL(), nats.UserCredentials(writeCreds(t, u.User)), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	breakCacheDir(t, nodes[1])
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: acc.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) || len(rep.Waiting) != 0 {
		t.Errorf("delete with node-b's cache resolver failing to write: phase %s waiting %v, want deleted", rep.Phase, rep.Waiting)
	}
}

// breakCacheDir makes a cache resolver node's directory unwritable, as a
// full or broken disk does: a file takes its place.
func breakCacheDir(t *testing.T, n *clusterNode) {
	t.Helper()
	raw, err := os.ReadFile(n.conf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`type: cache, dir: "([^"]+)"`).FindStringSubmatch(string(raw))
	if m == nil {
		t.Fatalf("no cache resolver directory in %s's configuration", n.name)
	}
	if err := os.RemoveAll(m[1]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m[1], nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDeletedAccountCachedOnAReturningCacheResolver: node-b runs a cache
// resolver (a leaf or edge server) and holds acme in its cache, fetched
// for a user who connected there. node-b is down while acme is deleted,
// which waits for no cache resolver, and comes back with its disk, acme
// live in its cache: it lists acme, but answers no LOOKUP. The tombstone
// is kept (acme is listed), yet the reconciler only compared the full
// resolvers' LOOKUP answers (none hold acme) and did nothing: node-b kept
// the live version, and the deleted account's users got in there, for as
// long as the cache keeps it. The tombstone's disabled version and DELETE
// must reach it.
func TestDeletedAccountCachedOnAReturningCacheResolver(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connectsTo := func(n *clusterNode) bool { return userConnects(creds, n) }
	// The user connects to node-b, which fetches acme and caches it.
	if !connectsTo(b) {
		t.Fatal("the user cannot connect to node-b before the delete")
	}
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete with the cache resolver down: phase %s, want deleted", rep.Phase)
	}
	b.start()
	waitRoutes(t, b)
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	lists, err := d.rc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(lists["node-b"], pub) {
		t.Errorf("node-b still lists the deleted account after two passes")
	}
	if connectsTo(b) {
		t.Errorf("the deleted account's user connects to node-b after two passes")
	}
}

// TestDeletedAccountCachedOnAReturningCacheResolverWithoutDeletes: as
// TestDeletedAccountCachedOnAReturningCacheResolver, where servers do not
// allow deletes (init --no-delete): node-a keeps acme's disabled version
// as the end state, node-b comes back with acme live in its cache. A
// pass sends the DELETE of one tombstone only (a probe of whether deletes
// are allowed yet), and it went to the first tombstone on node-a's list,
// never to acme: no pass gave node-b the disabled version, and acme's
// users got in there.
func TestDeletedAccountCachedOnAReturningCacheResolverWithoutDeletes(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodesOf(t, bootstrap.Options{NoDelete: true})
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	// Tombstones that come before acme. Deleted at once: each delete
	// waits for a later second for its disabled version's iat.
	tombs := make([]string, 8)
	for i := range tombs {
		acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("a-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		tombs[i] = acc.Account.PublicKey
	}
	var wg sync.WaitGroup
	for _, tomb := range tombs {
		wg.Go(func() {
			if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: tomb}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connectsTo := func(n *clusterNode) bool { return userConnects(creds, n) }
	if !connectsTo(b) {
		t.Fatal("the user cannot connect to node-b before the delete")
	}
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	b.start()
	waitRoutes(t, b)
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if connectsTo(b) {
		t.Errorf("the deleted account's user connects to node-b after two passes")
	}
}

// TestRevokeReachesAReturningCacheResolver: node-b runs a cache resolver
// (a leaf or edge server) and holds acme in its cache, fetched for a user
// who connected there. node-b is down while the user is revoked, and comes
// back with its disk: acme's copy there lacks the revocation. A cache
// resolver takes a push only while the account is loaded ("jwt update
// cache skipped" otherwise), answers no LOOKUP, and was never pushed to
// again: once a user loaded the copy, the revoked user got in there for as
// long as the cache kept it (its ttl starts again at each restart). node-a
// refuses the user all along: a client given node-a's URL alone that got
// in had failed over to node-b, learned from node-a's INFO.
func TestRevokeReachesAReturningCacheResolver(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	a, b := nodes[0], nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	// connect connects to n alone (no failover to a server n's INFO
	// names) and returns the name of the server that let the user in.
	connect := func(n *clusterNode) (string, bool) {
		name, err := userConnect(creds, n)
		if err != nil {
			return err.Error(), false
		}
		return name, true
	}
	if s, ok := connect(b); !ok {
		t.Fatalf("the user cannot connect to node-b before the revoke: %s", s)
	}
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: u.User.PublicKey}); err != nil {
		t.Fatal(err)
	}
	b.start()
	waitRoutes(t, b)
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	// The passes after node-b's return come before any user loads acme
	// there: their pushes are skipped.
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// A user loads node-b's old copy (it gets in until the next pass).
	s, ok := connect(b)
	t.Logf("the revoked user on node-b before the next pass: %v (%s)", ok, s)
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if s, ok := connect(a); ok {
		t.Errorf("the revoked user connects to node-a (let in by %s)", s)
	}
	if s, ok := connect(b); ok {
		t.Errorf("the revoked user connects to node-b (let in by %s) after a pass", s)
	}
	// node-b took the version: the passes leave it be.
	if r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil || r.Pushed != 0 {
		t.Errorf("a pass after node-b took the version: %+v, %v; want nothing pushed", r, err)
	}
}

// TestDisabledAccountCachedOnAReturningCacheResolver: node-b runs a cache
// resolver and holds acme in its cache; node-c, a full resolver, is down,
// so acme's delete stays disabled (its DELETE waits for node-c, for up to
// server_forget_after). node-b is down during the delete and comes back
// with acme live on its disk, not loaded: the disabled version's push is
// skipped there. Every pass left it so (only live accounts were pushed
// again to a cache resolver that lists them), and once a user of the
// deleted account loaded node-b's live copy it got in there until the
// DELETE went out. The disabled version is the account's current one: it
// must be pushed again until node-b takes it.
func TestDisabledAccountCachedOnAReturningCacheResolver(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 3)
	b, c := nodes[1], nodes[2]
	cache := "\nresolver: { type: cache, dir: \"" + t.TempDir() + "\", ttl: \"1h\", limit: 100 }"
	restartEdited(t, b, func(conf string) string { return resolverBlock.ReplaceAllLiteralString(conf, cache) })
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connectsTo := func(n *clusterNode) bool { return userConnects(creds, n) }
	if !connectsTo(b) {
		t.Fatal("the user cannot connect to node-b before the delete")
	}
	b.srv.Stop()
	c.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b and node-c down", map[string]bool{"node-a": true, "node-b": false, "node-c": false})
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDisabled) {
		t.Fatalf("delete with node-c down: phase %s, want disabled", rep.Phase)
	}
	b.start()
	waitRoutes(t, b)
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true, "node-c": false})
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// A user of the deleted account loads node-b's live copy.
	t.Logf("the deleted account's user on node-b before the next pass: %v", connectsTo(b))
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if connectsTo(nodes[0]) {
		t.Error("the deleted account's user connects to node-a")
	}
	if connectsTo(b) {
		t.Error("the deleted account's user connects to node-b after a pass")
	}
}

// cacheRestarted restarts node-b (a cache resolver) and waits until the
// client knows its new instance as a cache resolver: a push of a new
// account, which node-b does not list, tells it.
// userConnect connects a user's creds to node n itself, not to a server
// n's INFO names (to which nats.go fails over when n refuses), and returns
// the name of the server that let it in.
func userConnect(creds string, n *clusterNode) (string, error) {
	nc, err := nats.Connect(n.srv.URL(), nats.UserCredentials(creds), nats.NoReconnect(), nats.IgnoreDiscoveredServers())
	if err != nil {
		return "", err
	}
	defer nc.Close()
	return nc.ConnectedServerName(), nil
}

// userConnects tells whether a user's creds connect to node n itself.
func userConnects(creds string, n *clusterNode) bool {
	_, err := userConnect(creds, n)
	return err == nil
}

func cacheRestarted(t *testing.T, d *clusterDomain, b *clusterNode) {
	t.Helper()
	oldID := serverID(d.rc, "node-b")
	b.srv.Stop()
	b.start()
	waitRoutes(t, b)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if id := serverID(d.rc, "node-b"); id != "" && id != oldID && up(d.rc) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client did not see node-b's new instance")
		}
	}
	if _, err := d.svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "probe-" + strings.ToLower(b.srv.ID()[:6])}); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(d.rc.Servers(), func(s provision.Server) bool { return s.Name == "node-b" && s.Cache }) {
		t.Fatal("the client does not know node-b for a cache resolver after a push")
	}
}

// TestCacheResolverRestartBacksOff: node-b, a cache resolver, restarts
// listing 20 accounts (on its disk), none loaded: it answers "jwt update
// cache skipped" to each of their pushes, and a server never unloads an
// account. Each pass pushed all 20 again to every server, for good (up to
// its cache's limit, 1,000 by default, every 30 s), counted as pushed, and
// left their LOOKUP out. A version's push to an instance that skipped it
// waits 1, 2, 4, ... passes; the accounts are still checked.
func TestCacheResolverRestartBacksOff(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	const accounts = 20
	var pubs []string
	for i := range accounts {
		acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acme-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, acc.Account.PublicKey)
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: acc.Account.PublicKey, Name: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		// The user loads the account on node-b, which keeps it on its disk.
		if _, err := userConnect(writeCreds(t, u.User), b); err != nil {
			t.Fatalf("acme-%d's user cannot connect to node-b: %v", i, err)
		}
	}
	pass := func(what string) *api.ReconcileReply {
		t.Helper()
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Pushed != 0 || r.Failed != 0 {
			t.Errorf("%s: pushed %d, failed %d; want 0", what, r.Pushed, r.Failed)
		}
		return r
	}
	// Their creates came before the loads: node-b skipped them; loaded
	// now, it takes them, and is left be.
	if r := pass("the pass after the loads"); r.CacheRepushed != accounts {
		t.Errorf("the pass after the loads pushed %d again for node-b, want %d", r.CacheRepushed, accounts)
	}
	if r := pass("the pass after node-b took them"); r.CacheRepushed != 0 {
		t.Errorf("the pass after node-b took them pushed %d again, want 0", r.CacheRepushed)
	}
	cacheRestarted(t, d, b)
	lists, err := d.rc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range pubs {
		if !slices.Contains(lists["node-b"], pub) {
			t.Fatalf("node-b does not list %s after its restart", pub)
		}
	}
	// A new instance: pushed at once; then after 1, 2 and 4 passes.
	want := []int{accounts, 0, accounts, 0, 0, accounts, 0, 0, 0, 0, accounts}
	for i, n := range want {
		r := pass(fmt.Sprintf("pass %d after the restart", i+1))
		if r.CacheRepushed != n {
			t.Errorf("pass %d after the restart pushed %d again for node-b, want %d", i+1, r.CacheRepushed, n)
		}
		// The full resolver still checks them all (and the probe).
		if r.Checked < accounts+1 {
			t.Errorf("pass %d after the restart checked %d accounts, want %d", i+1, r.Checked, accounts+1)
		}
	}
}

// TestRevokeReachesALoadedCacheResolverWithinBackoff: node-b, a cache
// resolver, was down during a revoke and comes back with acme's old copy
// on its disk, not loaded. Its pushes back off (TestCacheResolverRestartBacksOff);
// a user who loads the copy meanwhile gets in until the next push due,
// which node-b takes ("jwt updated cache"): the revoked user is refused
// there, and that version is pushed no more.
func TestRevokeReachesALoadedCacheResolverWithinBackoff(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connect := func() (string, bool) {
		name, err := userConnect(creds, b)
		if err != nil {
			return err.Error(), false
		}
		return name, true
	}
	if s, ok := connect(); !ok {
		t.Fatalf("the user cannot connect to node-b before the revoke: %s", s)
	}
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: u.User.PublicKey}); err != nil {
		t.Fatal(err)
	}
	cacheRestarted(t, d, b)
	pass := func() *api.ReconcileReply {
		t.Helper()
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Passes 1 and 3 push acme again (skipped: not loaded); 4 and 5 wait.
	for i, n := range []int{1, 0, 1} {
		if r := pass(); r.CacheRepushed != n {
			t.Errorf("pass %d after node-b's return pushed %d again, want %d", i+1, r.CacheRepushed, n)
		}
	}
	// A user loads node-b's old copy: it gets in until the push due.
	s, ok := connect()
	t.Logf("the revoked user on node-b after pass 3: %v (%s)", ok, s)
	for i, n := range []int{0, 0, 1} {
		if r := pass(); r.CacheRepushed != n {
			t.Errorf("pass %d after node-b's return pushed %d again, want %d", i+4, r.CacheRepushed, n)
		}
	}
	if s, ok := connect(); ok {
		t.Errorf("the revoked user connects to node-b (let in by %s) after the push due", s)
	}
	// node-b took the version: no pass pushes it again.
	for i := range 8 {
		if r := pass(); r.CacheRepushed != 0 || r.Pushed != 0 {
			t.Errorf("pass %d after node-b took the version: %+v; want nothing pushed", i+7, r)
		}
	}
}

// listWithout answers LIST as if one server had not answered in time
// while on is set: that server missing from the map, no error.
type listWithout struct {
	provision.Resolver
	name string
	on   atomic.Bool
}

func (r *listWithout) List(ctx context.Context) (map[string][]string, error) {
	m, err := r.Resolver.List(ctx)
	if r.on.Load() {
		delete(m, r.name)
	}
	return m, err
}

// TestCacheResolverBackoffKeptThroughALateList: node-b, a cache resolver,
// restarted listing 5 accounts it skips; their pushes back off. One pass
// in which node-b's LIST reply came too late (a leaf on a slow link) is
// no sign that it stopped listing them: that pass threw their backoff
// away, so the next pass pushed all of them again at once and the backoff
// started over at 1 pass; a late LIST every few passes kept it there.
func TestCacheResolverBackoffKeptThroughALateList(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	lw := &listWithout{name: "node-b"}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { lw.Resolver = r; return lw })
	ctx := context.Background()
	const accounts = 5
	for i := range accounts {
		acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acme-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: acc.Account.PublicKey, Name: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := userConnect(writeCreds(t, u.User), b); err != nil {
			t.Fatalf("acme-%d's user cannot connect to node-b: %v", i, err)
		}
	}
	pass := func() *api.ReconcileReply {
		t.Helper()
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	pass()
	pass()
	cacheRestarted(t, d, b)
	// Pushed at once, then after 1 pass, then (next) after 2.
	for i, n := range []int{accounts, 0, accounts} {
		if r := pass(); r.CacheRepushed != n {
			t.Fatalf("pass %d after the restart pushed %d again for node-b, want %d", i+1, r.CacheRepushed, n)
		}
	}
	lw.on.Store(true)
	if r := pass(); r.CacheRepushed != 0 {
		t.Errorf("the pass without node-b's LIST pushed %d again for it, want 0", r.CacheRepushed)
	}
	lw.on.Store(false)
	if r := pass(); r.CacheRepushed != 0 {
		t.Errorf("the pass after node-b's late LIST pushed %d again for it, want 0 (its backoff of 2 passes not over)", r.CacheRepushed)
	}
	if r := pass(); r.CacheRepushed != accounts {
		t.Errorf("the second pass after node-b's late LIST pushed %d again for it, want %d", r.CacheRepushed, accounts)
	}
}

// TestDeletedAccountRefetchedByACacheResolverBacksOff: servers do not
// allow deletes (init --no-delete), so node-a keeps a deleted account's
// disabled version as the end state; node-b, a cache resolver, removes its
// copy at the DELETE. Each time a client of the deleted account reconnects
// to node-b, node-b fetches the disabled version from node-a and lists it
// again: every pass then pushed the account and sent a DELETE (past the
// one DELETE a pass sends as a probe), counted as pushed. node-b fetched
// the very version the store holds, which it took before: a push to it
// follows the cache backoff and counts as cache_repushed.
func TestDeletedAccountRefetchedByACacheResolverBacksOff(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodesOf(t, bootstrap.Options{NoDelete: true})
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connect := func() bool { return userConnects(creds, b) }
	if !connect() {
		t.Fatal("the user cannot connect to node-b before the delete")
	}
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	pushed, repushed := 0, 0
	for i := range 6 {
		// The deleted account's client reconnects to node-b, which
		// fetches the disabled version again (node-b asks no more than
		// once a second).
		time.Sleep(1100 * time.Millisecond)
		if connect() {
			t.Fatalf("the deleted account's user connects to node-b (pass %d)", i+1)
		}
		lists, err := d.rc.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(lists["node-b"], pub) {
			t.Fatalf("node-b does not list the deleted account after its client reconnected (pass %d)", i+1)
		}
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d: pushed %d, cache_repushed %d, deleted %d", i+1, r.Pushed, r.CacheRepushed, r.Deleted)
		pushed += r.Pushed
		repushed += r.CacheRepushed
	}
	if pushed != 0 || repushed > 1 {
		t.Errorf("six passes, each after the deleted account's client reconnected to node-b: pushed %d, cache_repushed %d; want 0 pushed, at most 1 pushed again for node-b (it took the version)", pushed, repushed)
	}
}

// TestDroppedTombstoneForgotten: node-b, a cache resolver, was down while
// acme was deleted and came back with acme live in its cache, loaded by a
// user: a pass pushes the disabled version (node-a stores it, node-b
// updates its copy) and the DELETE. Once the tombstone is dropped past its
// retention, what the instance remembered of acme on the servers (node-a's
// confirmation, node-b's copy) was kept for as long as it ran: a leak of
// one entry per server for each such account.
func TestDroppedTombstoneForgotten(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	b := nodes[1]
	d := newClusterDomain(t, res, nodes, time.Hour, nil, func(cfg *provision.Config) { cfg.TombstoneRetention = time.Nanosecond })
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := acc.Account.PublicKey
	u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, u.User)
	connect := func() { userConnects(creds, b) }
	connect()
	b.srv.Stop()
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	if _, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub}); err != nil {
		t.Fatal(err)
	}
	b.start()
	waitRoutes(t, b)
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	connect() // loads node-b's live copy
	for i := range 3 {
		r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pass %d: %+v remembers %v", i+1, r, d.svc.Remembers(pub))
	}
	if _, err := d.store.Account(ctx, pub); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("the tombstone is still there after 3 passes (%v)", err)
	}
	if d.svc.Remembers(pub) {
		t.Errorf("the instance still remembers acme on the servers after its tombstone was dropped")
	}
}

// TestFirstCreateBesideACacheResolver: the first create after a start
// reads the names of the system account and the service's own (a create
// may not take them) from the servers. It asked every server and waited
// for each that was not known to run a cache resolver, which answers no
// LOOKUP and is known as one only from its first push's answer: beside
// one, the first create after every start waited the whole request
// timeout twice (10 s with the default 5 s, past a caller's 5 s). A name
// needs no newest copy: the first answer holding the account's JWT is
// enough.
func TestFirstCreateBesideACacheResolver(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	d := newClusterDomain(t, res, nodes, time.Hour, nil) // request timeout 2s
	ctx := context.Background()
	start := time.Now()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "first"}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= time.Second {
		t.Errorf("the first create beside a cache resolver took %s: it waited for the cache resolver's LOOKUP answers", took)
	}
	// The names are known all the same.
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "SYS"}) // bootstrap names it so
	if !errors.Is(err, provision.ErrConflict) {
		t.Errorf("a create named as the system account: %v, want a conflict", err)
	}
}

package resolver_test

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/resolver"
)

// cacheResolverBlock matches the resolver block of a rendered ServerConf.
var cacheResolverBlock = regexp.MustCompile(`(?s)\nresolver: \{.*?\n\}`)

// toCacheResolver restarts a node with a cache resolver (as a leaf or edge
// server runs) instead of its full one, and waits for its routes.
func toCacheResolver(t *testing.T, n *node, routes int) {
	t.Helper()
	n.srv.Stop()
	raw, err := os.ReadFile(n.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf := cacheResolverBlock.ReplaceAllLiteralString(string(raw), "\nresolver: { type: cache, dir: \""+t.TempDir()+"\", ttl: \"1h\", limit: 100 }")
	if conf == string(raw) {
		t.Fatal("no resolver block in the node's configuration")
	}
	if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n.restart(t)
	waitFor(t, 10*time.Second, n.name+" routed", func() bool { return n.srv.NumRoutes() >= routes })
}

// TestCacheAndFullResolvers: node-a runs a full resolver, node-b a cache
// resolver. The cache resolver answers a push ("jwt update cache
// skipped") but never a LOOKUP: once a push has said which server runs
// which resolver, LookupAll must not wait for node-b, or every check of
// the reconciler's LOOKUP sweep takes the whole timeout.
func TestCacheAndFullResolvers(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, res, 2)
	toCacheResolver(t, nodes[1], 1)
	nc, err := nats.Connect(nodes[0].srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 5*time.Second, "two servers answer the ping", func() bool { return pingCount(t, nc) == 2 })
	const timeout = 2 * time.Second
	c := newClient(t, nc, resolver.Options{Timeout: timeout, RefreshInterval: time.Minute})
	ctx := context.Background()

	pub, token := newAccount(t, "mixed", operator(t, res.Dir).Signer)
	start := time.Now()
	result, err := c.Update(ctx, token)
	if err != nil {
		t.Fatalf("Update: %v (result %+v)", err, result)
	}
	if took := time.Since(start); took > timeout/2 {
		t.Errorf("Update took %s: it waited for a server that answers every update", took)
	}
	if len(result) != 2 || !result[0].Stored || result[1].Server != "node-b" || result[1].Stored || !result[1].Answered || result[1].Code != 200 {
		t.Fatalf("result %+v, want node-a stored and node-b answered 200 storing nothing", result)
	}

	start = time.Now()
	copies, err := c.LookupAll(ctx, pub)
	took := time.Since(start)
	if err != nil || len(copies) != 1 || copies[0] != token {
		t.Fatalf("LookupAll = %d answers, %v; want node-a's copy", len(copies), err)
	}
	if took > timeout/2 {
		t.Errorf("LookupAll took %s (timeout %s): it waited for the cache resolver, which answers no LOOKUP", took, timeout)
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// resolverDir reads a node's resolver directory (its disk) from its
// configuration file.
func resolverDir(t *testing.T, n *clusterNode) string {
	t.Helper()
	raw, err := os.ReadFile(n.conf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)resolver: \{\s*type: full\s*dir: "([^"]+)"`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no resolver dir in %s", n.conf)
	}
	return string(m[1])
}

// TestEnsureSelfExportWaitsForADownServer: two servers; the service's own
// account lacks the self-service export on both. node-b goes down holding
// a newer copy than node-a (one an operator pushed with nsc that node-a
// lost: written to node-b's disk while it is down). EnsureSelfExport read
// node-a's older copy only, added the export, and pushed it signed a
// second later than node-b's copy: back, node-b answers with its own, and
// resolver sync keeps the later iat, node-b's change undone on every
// server. It must push nothing while a known server is down, naming it,
// and build on node-b's copy once it is back.
func TestEnsureSelfExportWaitsForADownServer(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	pub := res.ServiceAccount
	d := newClusterDomain(t, res, nodes, time.Hour, nil, func(c *provision.Config) { c.ServiceAccount = pub })
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	older := mustClaims(t, lookupAll(t, d.rc, pub)[0])
	older.Exports = nil
	older.Description = "older"
	olderJWT, err := older.Encode(op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, olderJWT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the newer version's iat is a second later
	newer := mustClaims(t, olderJWT)
	newer.Description = "newer, pushed with nsc"
	newerJWT, err := newer.Encode(op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	b := nodes[1]
	b.srv.Stop()
	waitServers(t, d.rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	if err := os.WriteFile(filepath.Join(resolverDir(t, b), pub+".jwt"), []byte(newerJWT), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the push with nsc was a while ago

	err = d.svc.EnsureSelfExport(ctx)
	if !errors.Is(err, provision.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "node-b") {
		t.Errorf("EnsureSelfExport with node-b down: %v, want unavailable naming node-b", err)
	}
	for _, cp := range lookupAll(t, d.rc, pub) {
		if cp != olderJWT {
			t.Errorf("node-a's copy changed while node-b was down (description %q): a version built on an older copy than node-b's, issued later, which resolver sync spreads over it", mustClaims(t, cp).Description)
		}
	}

	b.start()
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	if err := d.svc.EnsureSelfExport(ctx); err != nil {
		t.Fatalf("EnsureSelfExport with both servers up: %v", err)
	}
	copies := lookupAll(t, d.rc, pub)
	if len(copies) != 2 {
		t.Fatalf("%d copies, want node-a's and node-b's", len(copies))
	}
	for _, cp := range copies {
		if c := mustClaims(t, cp); c.Description != newer.Description || len(c.Exports) == 0 {
			t.Errorf("a server holds the service account described %q with %d exports, want node-b's newer copy with the export", c.Description, len(c.Exports))
		}
	}
}

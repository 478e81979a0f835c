package provision_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// beforeLookupOf runs hook once, before the first LookupAll of account
// pub.
type beforeLookupOf struct {
	provision.Resolver
	pub  string
	once sync.Once
	hook func()
}

func (r *beforeLookupOf) LookupAll(ctx context.Context, pub string) ([]string, error) {
	if pub == r.pub {
		r.once.Do(r.hook)
	}
	return r.Resolver.LookupAll(ctx, pub)
}

// TestRotateResignsNoRemoteAccountWhileAServerIsDown: two servers that
// trust the next operator signing key; node-b goes down during the
// rotation, after every server said it trusts the key, holding a newer
// copy of the service's own account than node-a (one pushed with nsc that
// node-a lost). The rotation signed node-a's older copy with the new key
// and pushed it, issued later than node-b's: back, resolver sync keeps it
// over node-b's, whose change is undone on every server. The account must
// be left as it is, listed as failed, while node-b is down, and signed
// anew on node-b's copy by the rotation sent again once it is back.
func TestRotateResignsNoRemoteAccountWhileAServerIsDown(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	keyPath := addSigningKey(t, res.Dir)
	opPath := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	nodes := startNodes(t, res, 2)
	pub := res.ServiceAccount
	op, err := provision.LoadOperator(opPath, filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	b := nodes[1]
	var newerJWT string
	hr := &beforeLookupOf{pub: pub}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { hr.Resolver = r; return hr }, func(c *provision.Config) {
		c.NextOperator = func() (*provision.Operator, error) { return provision.LoadOperator(opPath, keyPath) }
	})
	hr.hook = func() {
		b.srv.Stop()
		waitServers(t, d.rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
		if err := os.WriteFile(filepath.Join(resolverDir(t, b), pub+".jwt"), []byte(newerJWT), 0o600); err != nil {
			t.Error(err)
		}
	}
	ctx := context.Background()
	olderJWT := lookupAll(t, d.rc, pub)[0]
	time.Sleep(1100 * time.Millisecond) // the newer version's iat is a second later
	newer := mustClaims(t, olderJWT)
	newer.Description = "newer, pushed with nsc"
	if newerJWT, err = newer.Encode(op.Signer); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the push with nsc was a while ago

	rep, err := d.svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Failed, pub) {
		t.Errorf("rotation with node-b down: failed %v, want the service's own account among them", rep.Failed)
	}
	for _, cp := range lookupAll(t, d.rc, pub) {
		if cp != olderJWT {
			c := mustClaims(t, cp)
			t.Errorf("node-a's copy changed while node-b was down (description %q, iat %d, node-b's %d): built on an older copy than node-b's and issued later, resolver sync spreads it over node-b's", c.Description, c.IssuedAt, newer.IssuedAt)
		}
	}

	b.start()
	waitServers(t, d.rc, 10*time.Second, "node-b back", map[string]bool{"node-a": true, "node-b": true})
	if rep, err = d.svc.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil || len(rep.Failed) > 0 {
		t.Fatalf("rotation sent again with node-b back: failed %v, %v", rep, err)
	}
	next, err := provision.LoadOperator(opPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range lookupAll(t, d.rc, pub) {
		if c := mustClaims(t, cp); c.Description != newer.Description || c.Issuer != next.SignerKey {
			t.Errorf("a server holds the service account described %q signed by %s, want node-b's newer copy signed by %s", c.Description, c.Issuer, next.SignerKey)
		}
	}
}

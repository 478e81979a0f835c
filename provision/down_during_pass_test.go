package provision_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
)

// afterList runs hook once, after the next LIST once armed: between the
// pass's listing of the servers up and its LOOKUP sweep.
type afterList struct {
	provision.Resolver
	armed atomic.Bool
	hook  func()
}

func (r *afterList) List(ctx context.Context) (map[string][]string, error) {
	out, err := r.Resolver.List(ctx)
	if r.armed.CompareAndSwap(true, false) {
		r.hook()
	}
	return out, err
}

// TestServerDownDuringAPass: node-b shuts down after a pass listed it up.
// Every account is on node-a and was on node-b; the LOOKUP sweep then
// hears one copy of each where the pass expected two. The pass must not
// take that for servers out of line and push every account again (a
// server going down during a pass over 10,000 accounts sent 10,000
// pushes, none of which it could receive).
func TestServerDownDuringAPass(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	b := nodes[1]
	var rc *resolver.Client
	al := &afterList{hook: func() {
		b.srv.Stop()
		waitServers(t, rc, 5*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	}}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { al.Resolver = r; return al })
	rc = d.rc
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
	al.armed.Store(true)
	r, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if al.armed.Load() {
		t.Fatal("the pass did not list the servers")
	}
	if r.Pushed != 0 || r.Failed != 0 {
		t.Errorf("pass in which node-b went down: pushed %d of %d accounts, failed %d; want none pushed (node-a holds every one, node-b is down)", r.Pushed, accounts, r.Failed)
	}
}

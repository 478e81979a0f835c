package provision_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// routeProxy carries a route to a server's cluster port, and can cut it:
// the route's far side stays up with the same server ID, as a leaf or edge
// server whose link flaps does.
type routeProxy struct {
	ln      net.Listener
	to      string
	mu      sync.Mutex
	conns   []net.Conn
	blocked bool
}

func newRouteProxy(t *testing.T, to string) *routeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &routeProxy{ln: ln, to: to}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.blocked {
				p.mu.Unlock()
				in.Close()
				continue
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				p.mu.Unlock()
				in.Close()
				continue
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

// cut closes the connections it carries; while blocked it takes no new one.
func (p *routeProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *routeProxy) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = false
}

// countingResolver counts pushes (Update) and LISTs.
type countingResolver struct {
	provision.Resolver
	updates, lists atomic.Int64
}

func (r *countingResolver) Update(ctx context.Context, token string) (provision.PushResult, error) {
	r.updates.Add(1)
	return r.Resolver.Update(ctx, token)
}

func (r *countingResolver) List(ctx context.Context) (map[string][]string, error) {
	r.lists.Add(1)
	return r.Resolver.List(ctx)
}

var routeURL = regexp.MustCompile(`nats-route://127\.0\.0\.1:[0-9]+`)

// TestCacheResolverKeptThroughALinkFlap: node-b, a cache resolver, took
// the versions of the 5 accounts it lists ("jwt updated cache"). Its route
// (a leaf's link) drops long enough for a server ping to go unanswered,
// and comes back: the same instance (same server ID), its cache as it was.
// The reconciler forgot what it had taken (and what its pushes waited
// for) as for a restart, and pushed every account it lists again at once:
// each flap of a leaf's link did so, and reset its backoff.
func TestCacheResolverKeptThroughALinkFlap(t *testing.T) {
	t.Parallel()
	res, nodes := cacheResolverNodes(t)
	a, b := nodes[0], nodes[1]
	// node-b's route goes through a proxy the test can cut.
	proxy := newRouteProxy(t, a.srv.ClusterAddr().String())
	restartEdited(t, b, func(conf string) string {
		return routeURL.ReplaceAllLiteralString(conf, "nats-route://"+proxy.ln.Addr().String())
	})
	cr := &countingResolver{}
	d := newClusterDomain(t, res, nodes, time.Hour, func(r provision.Resolver) provision.Resolver { cr.Resolver = r; return cr }, func(c *provision.Config) {
		c.ReconcileInterval = time.Hour // passes come from the test and from servers joining
	})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		d.svc.Run(ctx)
	}()
	t.Cleanup(func() { stop(); <-ran })
	waitLists := func(n int64, what string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); cr.lists.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no pass started: %s", what)
			}
		}
	}
	pass := func() *api.ReconcileReply {
		t.Helper()
		r, err := d.svc.Reconcile(context.Background(), api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	waitLists(1, "Run's first pass")
	pass()
	const accounts = 5
	for i := range accounts {
		acc, err := d.svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: fmt.Sprintf("acme-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		u, err := d.svc.CreateUser(context.Background(), api.CreateUserRequest{Account: acc.Account.PublicKey, Name: "edge"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := userConnect(writeCreds(t, u.User), b); err != nil {
			t.Fatalf("acme-%d's user cannot connect to node-b: %v", i, err)
		}
	}
	if r := pass(); r.CacheRepushed != accounts {
		t.Fatalf("the pass after the loads pushed %d again for node-b, want %d", r.CacheRepushed, accounts)
	}
	if r := pass(); r.CacheRepushed != 0 || r.Pushed != 0 {
		t.Fatalf("the pass after node-b took them: %+v; want nothing pushed", r)
	}
	id := serverID(d.rc, "node-b")
	// The link drops: a server ping goes unanswered, node-b is down.
	proxy.cut()
	if err := d.rc.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitServers(t, d.rc, 10*time.Second, "node-b down", map[string]bool{"node-a": true, "node-b": false})
	// It comes back, the same instance.
	lists := cr.lists.Load()
	before := cr.updates.Load()
	proxy.open()
	waitRoutes(t, b)
	for deadline := time.Now().Add(10 * time.Second); serverID(d.rc, "node-b") == ""; time.Sleep(50 * time.Millisecond) {
		if err := d.rc.Discover(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the client does not see node-b back")
		}
	}
	if got := serverID(d.rc, "node-b"); got != id {
		t.Fatalf("node-b came back as %s, want the same instance %s", got, id)
	}
	// Run's pass for the return, then one of the test's.
	waitLists(lists+1, "Run's pass after node-b came back")
	r := pass()
	if n := cr.updates.Load() - before - int64(r.CacheRepushed+r.Pushed); n != 0 {
		t.Errorf("the pass after node-b's link came back pushed %d accounts, want 0 (node-b is the same instance, and took every version)", n)
	}
	if r.CacheRepushed != 0 || r.Pushed != 0 {
		t.Errorf("the second pass after node-b's link came back: %+v; want nothing pushed", r)
	}
}

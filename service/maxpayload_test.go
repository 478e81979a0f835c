package service_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// roundRobin listens on a local port and forwards the i-th connection to
// targets[i%len(targets)]: one nats_url (a load balancer in front of a
// cluster) that lands the service's connections on different servers.
func roundRobin(t *testing.T, targets ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", targets[int(n.Add(1)-1)%len(targets)])
			if err != nil {
				in.Close()
				continue
			}
			t.Cleanup(func() { in.Close(); out.Close() })
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestMaxJWTSizeFitsThePushConnection: the service's two connections
// (requests and replies; pushes) may land on two servers of a cluster with
// different max_payload. The largest account JWT the service signs was
// derived from the requests connection's alone: a JWT over the push
// connection's max_payload was made, then its push failed ("maximum
// payload exceeded") and the request was answered with an error that does
// not say the account is too large. It must be refused (400) before
// anything is made, as one over the requests connection's limit is.
func TestMaxJWTSizeFitsThePushConnection(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	a, b := maxPayloadPair(t, env)
	env.Server = a
	env.Config.NATSURL = "nats://" + roundRobin(t, a.Addr().String(), b.Addr().String())
	svc := env.Start(t)
	if svc.NC.MaxPayload() <= svc.PushNC.MaxPayload() {
		t.Fatalf("requests connection's max_payload %d, push connection's %d: want the push connection on node-b", svc.NC.MaxPayload(), svc.PushNC.MaxPayload())
	}

	// About 30 KB of subjects: an account JWT of about 40 KB (base64),
	// within node-a's limit, over node-b's.
	var subjects []string
	for i := range 1000 {
		subjects = append(subjects, fmt.Sprintf("telemetry.%04d.readings.>", i))
	}
	admin := env.Admin(t)
	rep := provtest.Request(t, admin, "prov.account.create", map[string]any{"name": "big", "default_permissions": map[string]any{"pub": map[string]any{"allow": subjects}}})
	if rep.Code != 400 || !strings.Contains(rep.Description, "over the limit") {
		t.Errorf("create of a JWT over the push connection's max_payload: %d %q, want 400 over the limit", rep.Code, rep.Description)
	}
	if got := provtest.Request(t, admin, "prov.account.get", map[string]any{"account": "big"}); got.Code != 404 {
		t.Errorf("account.get after the refused create: %d %q, want 404", got.Code, got.Description)
	}
}

// TestMaxJWTSizeFollowsAReconnect: the largest account JWT was derived once,
// at start, from the servers the two connections were on. After a reconnect
// to another server of the cluster, with a smaller max_payload, a JWT over
// it was made, then its push failed ("maximum payload exceeded") and the
// request was answered 504, which a caller retries for ever. It must be
// refused (400) before anything is made, as at start.
func TestMaxJWTSizeFollowsAReconnect(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	a, b := maxPayloadPair(t, env)
	// Both connections start on node-a (1 MiB); node-b is known to them
	// from node-a's INFO only.
	env.Server = a
	env.Config.NATSURL = "nats://" + a.Addr().String()
	svc := env.Start(t)
	if svc.NC.MaxPayload() <= 32768 || svc.PushNC.MaxPayload() <= 32768 {
		t.Fatalf("max_payload %d and %d at start: want both connections on node-a", svc.NC.MaxPayload(), svc.PushNC.MaxPayload())
	}
	a.Stop()
	env.Server = b
	for deadline := time.Now().Add(15 * time.Second); svc.NC.MaxPayload() != 32768 || svc.PushNC.MaxPayload() != 32768 || !svc.NC.IsConnected() || !svc.PushNC.IsConnected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the service did not reconnect to node-b")
		}
	}

	// About 25 KB of subjects, a request within node-b's limit: an
	// account JWT of about 34 KB (base64), over it.
	var subjects []string
	for i := range 900 {
		subjects = append(subjects, fmt.Sprintf("telemetry.%04d.readings.>", i))
	}
	admin := env.Admin(t)
	rep := provtest.Request(t, admin, "prov.account.create", map[string]any{"name": "big", "default_permissions": map[string]any{"pub": map[string]any{"allow": subjects}}})
	if rep.Code != 400 || !strings.Contains(rep.Description, "over the limit") {
		t.Errorf("create of a JWT over max_payload after a reconnect: %d %q, want 400 over the limit", rep.Code, rep.Description)
	}
	if got := provtest.Request(t, admin, "prov.account.get", map[string]any{"account": "big"}); got.Code != 404 {
		t.Errorf("account.get after the refused create: %d %q, want 404", got.Code, got.Description)
	}
}

// maxPayloadPair stops env's server and starts node-a, the deployment's
// server (1 MiB max_payload), and node-b, routed to it, with 32 KiB.
func maxPayloadPair(t *testing.T, env *provtest.Env) (a, b *natsembed.Server) {
	t.Helper()
	env.Server.Stop()
	node := func(name, route, extra string) *natsembed.Server {
		conf := env.Init.Server
		conf.ServerName = name
		conf.Listen = "127.0.0.1:-1"
		conf.ResolverDir = filepath.Join(t.TempDir(), "jwt")
		conf.JetStreamDir = ""
		conf.Cluster = &bootstrap.ClusterConf{Name: "test-cluster", Listen: "127.0.0.1:-1"}
		if route != "" {
			conf.Cluster.Routes = []string{route}
		}
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, append(conf.Render(), extra...), 0o600); err != nil {
			t.Fatal(err)
		}
		srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a = node("node-a", "", "")
	b = node("node-b", "nats-route://"+a.ClusterAddr().String(), "\nmax_payload: 32768\n")
	for deadline := time.Now().Add(10 * time.Second); b.NumRoutes() < 1 || a.NumRoutes() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node-b did not route to node-a")
		}
	}
	return a, b
}

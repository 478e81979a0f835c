package service_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// TestServiceLeavesAServerLostWithoutAReset: the machine of the server the
// instance is connected to is lost without a TCP reset (power cut, a
// partition): its connections stay open and nothing comes through them.
// nats.go's default pings (every 2 minutes, two outstanding) took 4 to 6
// minutes to call such a connection stale, and all that time the instance
// answered nothing (its subscriptions and pushes on the lost server) while
// another server of the cluster was there. It must go over to that server
// within seconds.
func TestServiceLeavesAServerLostWithoutAReset(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Server.Stop()
	// node-a is reached only through link, which the test stalls as a
	// lost machine would: node-a advertises it to clients as its address.
	portA := provtest.FreePort(t)
	link, pause := provtest.StallLink(t, fmt.Sprintf("127.0.0.1:%d", portA))
	node := func(name string, port int, route, extra string) *natsembed.Server {
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
		srv, err := natsembed.Start(path, natsembed.Options{Port: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a := node("node-a", portA, "", fmt.Sprintf("\nclient_advertise: %q\n", link))
	b := node("node-b", -1, "nats-route://"+a.ClusterAddr().String(), "")
	for deadline := time.Now().Add(10 * time.Second); b.NumRoutes() < 1 || a.NumRoutes() < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node-b did not route to node-a")
		}
	}
	env.Config.NATSURL = "nats://" + link
	svc := env.Start(t)
	env.Server = b
	admin := env.Admin(t)
	if rep := provtest.Request(t, admin, "prov.account.create", map[string]any{"name": "before"}); rep.Code != 0 {
		t.Fatalf("create before the loss: %d %s", rep.Code, rep.Description)
	}

	pause(true)
	lost := time.Now()
	const limit = 15 * time.Second
	for i := 0; ; i++ {
		m, err := admin.Request("prov.account.create", fmt.Appendf(nil, `{"name":"after-%d"}`, i), 2*time.Second)
		if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
			break
		}
		if time.Since(lost) > limit {
			t.Fatalf("no account created within %s of the loss of node-a's machine (the service's connections on node-a: connected %v, %v; last: %v %q %q)",
				limit, svc.NC.IsConnected(), svc.PushNC.ConnectedUrlRedacted(), err, msgHeader(m, "Nats-Service-Error-Code"), msgHeader(m, "Nats-Service-Error"))
		}
	}
	t.Logf("an account created %s after node-a's machine was lost", time.Since(lost).Round(100*time.Millisecond))
}

// msgHeader is a header of m, or "" when there is no m.
func msgHeader(m *nats.Msg, key string) string {
	if m == nil {
		return ""
	}
	return m.Header.Get(key)
}

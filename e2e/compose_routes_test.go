package e2e

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestComposeRoutesRefuseAServerWithoutCredentials: the cluster port of the
// container configs (6222) listened with no route authorization, so any
// process that reached it joined the cluster as a route, and a route is
// trusted with every account's messages: user.create replies (seeds and
// creds) included. docker-compose.yml does not publish it, but a
// container's address is reachable from the host, and the configs are
// what an operator copies to machines. A server that knows only the
// cluster's name must not join the played compose cluster; the three
// nodes still do (startCluster's JetStream answers), and the configs,
// which now hold the route password, are 0600.
func TestComposeRoutesRefuseAServerWithoutCredentials(t *testing.T) {
	cl := startCluster(t)
	cl.waitJetStream(t, "nats://"+cl.mapAddr(t, "n1", bootstrap.ContainerPort))

	route, err := url.Parse("nats://" + cl.mapAddr(t, "n1", bootstrap.ContainerClusterPort))
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := server.NewServer(&server.Options{
		ServerName: "rogue",
		Host:       "127.0.0.1",
		Port:       -1,
		Cluster:    server.ClusterOpts{Name: bootstrap.ClusterName, Host: "127.0.0.1", Port: -1},
		Routes:     []*url.URL{route},
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go rogue.Start()
	t.Cleanup(rogue.Shutdown)
	if !rogue.ReadyForConnections(10 * time.Second) {
		t.Fatal("the rogue server does not start")
	}
	// The rogue side counts its route from n1's INFO on, before n1 reads
	// its CONNECT and refuses it: what counts is whether n1 took it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		rz, err := cl.servers["n1"].Routez(&server.RoutezOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			if r.RemoteName == "rogue" {
				t.Fatalf("a server with no route credentials joined the compose cluster through n1's %s", route.Host)
			}
		}
	}

	for n := 1; n <= bootstrap.ClusterSize; n++ {
		fi, err := os.Stat(filepath.Join(cl.w.init.Dir, bootstrap.ContainerConfFile(n)))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %o, want 0600: it holds the route password", bootstrap.ContainerConfFile(n), fi.Mode().Perm())
		}
	}
}

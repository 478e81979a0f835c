package bench

import (
	"bytes"
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// In a cluster, the floors and the service enter through the same node:
// each connection picked one of the three URLs at random, so that the
// floor's pushes could enter through one node and the service's through
// another (and the admin's requests reach the service over a route the
// floors never cross), a comparison of different paths.
func TestClusterFloorsAndServiceEnterThroughOneNode(t *testing.T) {
	binary, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("no nats-server binary on PATH")
	}
	ctx := context.Background()
	e, err := Start(ctx, Options{Dir: t.TempDir(), Store: StoreJetStream, ServerBinary: binary, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	wf, err := e.startWriteFloor(ctx, e.replicas())
	if err != nil {
		t.Fatal(err)
	}
	defer wf.stop(ctx, e)
	want := e.Service.NC.ConnectedServerName()
	for _, c := range []struct {
		name string
		nc   *nats.Conn
	}{
		{"service's resolver pushes", e.Service.PushNC},
		{"service's store", e.Service.SvcNC},
		{"admin's requests", e.Admin},
		{"floors' pushes", e.Sys},
		{"JetStream write floor", wf.nc},
	} {
		if got := c.nc.ConnectedServerName(); got != want {
			t.Errorf("%s enter through node %s, the service's requests through %s", c.name, got, want)
		}
	}
}

// The scale mode's memory of a cluster counts its three server processes,
// and says so: it took the first node's alone and printed it as "the
// nats-server process".
func TestClusterMemoryCountsEveryServer(t *testing.T) {
	binary, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("no nats-server binary on PATH")
	}
	e, err := Start(context.Background(), Options{Dir: t.TempDir(), Store: StoreJetStream, ServerBinary: binary, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	first := rss(strconv.Itoa(e.External.Pid()))
	if got := e.serverRSS(); first == 0 || got < first*2 {
		t.Errorf("servers' memory %d bytes, the first node's alone %d: want the three nodes'", got, first)
	}
	r := &Report{External: true, Servers: 3, LargeSize: 2000, RSSBytes: 50 << 20, ServerRSS: 90 << 20, RSSLimit: RSSLimit, RSSPass: pass(true)}
	var b bytes.Buffer
	r.Print(&b)
	if !strings.Contains(b.String(), "the 3 nats-server processes together: 90.0 MiB") {
		t.Errorf("a cluster's memory printed as:\n%s", b.String())
	}
}

package bench

import (
	"context"
	"os/exec"
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

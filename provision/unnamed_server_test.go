package provision_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestDeleteAfterAnUnnamedServerShutDown: node-b has no server_name, so
// nats-server names it by its server ID, new at each start. Once it shut
// down (a restart's first half), its name never answers again, yet the
// delete of an account waited for it, disabled, until
// server_forget_after (a day by default): after every restart of such a
// server, every delete in that day was left disabled. Forgotten once it
// shut down, its disk back as a new server is cleaned as a named server's
// back after server_forget_after is.
func TestDeleteAfterAnUnnamedServerShutDown(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	b := nodes[1]
	restartEdited(t, b, func(conf string) string { return strings.Replace(conf, `server_name: "node-b"`, "", 1) })
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	id := b.srv.ID()
	b.srv.Stop()
	for deadline := time.Now().Add(5 * time.Second); up(d.rc) > 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the unnamed server %s still up 5s after it shut down: %+v", id, d.rc.Servers())
		}
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: acc.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != string(provision.PhaseDeleted) {
		t.Fatalf("delete after the unnamed server %s shut down: phase %s waiting %v, want deleted", id, rep.Phase, rep.Waiting)
	}
	// Its disk, holding the live account, comes back as a new server:
	// the tombstone deletes the account there again, as it does on a
	// named server back after server_forget_after.
	b.start()
	for deadline := time.Now().Add(10 * time.Second); up(d.rc) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node-b's new instance not known within 10s: %+v", d.rc.Servers())
		}
	}
	for range 2 {
		if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	copies, err := d.rc.LookupAll(ctx, acc.Account.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 2 {
		t.Fatalf("LOOKUP answered by %d servers, want 2", len(copies))
	}
	for _, cp := range copies {
		if cp != "" {
			t.Errorf("a server holds the deleted account after node-b's disk came back and two passes: %d copies %q", len(copies), copies)
			break
		}
	}
}

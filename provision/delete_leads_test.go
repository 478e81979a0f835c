package provision_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// staleFinish, once armed, has the write that makes a delete final find
// the account changed (another instance wrote it again meanwhile), and the
// read after it fail as a KV failover does.
type staleFinish struct {
	*filestore.Store
	armed    atomic.Bool
	readFail atomic.Bool
}

func (f *staleFinish) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if a.Phase == provision.PhaseDeleted && f.armed.CompareAndSwap(true, false) {
		// Another instance's write: the account as it was, at a new
		// revision.
		cur, err := f.Store.Account(ctx, a.PublicKey)
		if err != nil {
			return 0, err
		}
		if _, err := f.Store.UpdateAccount(ctx, cur, cur.Revision); err != nil {
			return 0, err
		}
		f.readFail.Store(true)
		return 0, fmt.Errorf("filestore: update account %s: %w", a.PublicKey, provision.ErrStale)
	}
	return f.Store.UpdateAccount(ctx, a, rev)
}

func (f *staleFinish) Account(ctx context.Context, pub string) (provision.Account, error) {
	if f.readFail.CompareAndSwap(true, false) {
		return provision.Account{}, fmt.Errorf("kvstore: get account %s: %w: %w", pub, provision.ErrUnavailable, context.DeadlineExceeded)
	}
	return f.Store.Account(ctx, pub)
}

// TestDeleteNotFinalWhenTheStaleRereadFails: the write that makes a
// delete final finds the account changed by another instance (which may
// have put the live version back), and reading it again fails (a KV
// failover). Nothing says what the store holds: the delete must not be
// answered "deleted", and the store's version must still be there for a
// pass to finish or repair.
func TestDeleteNotFinalWhenTheStaleRereadFails(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	var fs *staleFinish
	d := newDomain(t, env, nil, func(c *provision.Config) {
		fs = &staleFinish{Store: c.Store.(*filestore.Store)}
		c.Store = fs
	})
	t.Cleanup(d.stop)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	fs.armed.Store(true)
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if fs.armed.Load() {
		t.Fatal("the delete never tried to become final")
	}
	if rep.Phase == "deleted" {
		t.Errorf("the delete is answered deleted, though the store's account could not be read after another instance changed it")
	}
	a, err := d.store.Account(ctx, pub)
	if err != nil {
		t.Fatal(err)
	}
	if a.Phase == provision.PhaseDeleted {
		t.Fatalf("the store says deleted; the wrapper never let that write through")
	}
	// The next pass finishes it.
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	if a, err = d.store.Account(ctx, pub); err != nil || a.Phase != provision.PhaseDeleted {
		t.Errorf("after a pass the store holds %q (%v), want deleted", a.Phase, err)
	}
}

// blockDelete makes a server's rename of an account's JWT to .deleted
// (allow_delete without hard_delete) fail: a non-empty directory stands
// where the renamed file goes. The server answers the DELETE with its
// error, as a broken disk makes it do. It returns what undoes it.
func blockDelete(t *testing.T, resolverDir, pub string) func() {
	t.Helper()
	var file string
	filepath.WalkDir(resolverDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == pub+".jwt" {
			file = p
		}
		return nil
	})
	if file == "" {
		t.Fatalf("no %s.jwt under %s", pub, resolverDir)
	}
	blocker := file + ".deleted"
	os.RemoveAll(blocker)
	if err := os.MkdirAll(filepath.Join(blocker, "keep"), 0o755); err != nil {
		t.Fatal(err)
	}
	return func() { os.RemoveAll(blocker) }
}

// TestRefusedRepushDeleteCountedFailed: a finished delete's account is
// back live on a server (restored from an old disk); the pass pushes the
// disabled version and sends the DELETE again, which the server, which
// allows deletes, answers with an error (its disk). The pass must count
// the account failed: only a refusal because deletes are off is the end
// state.
func TestRefusedRepushDeleteCountedFailed(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	t.Cleanup(d.stop)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub, live := created.Account.PublicKey, created.Account.JWT
	if rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"}); err != nil || rep.Phase != "deleted" {
		t.Fatalf("delete: %+v, %v", rep, err)
	}
	// The server gets the live version back, as from an old disk.
	if _, err := d.rc.Update(ctx, live); err != nil {
		t.Fatal(err)
	}
	defer blockDelete(t, env.Init.Server.ResolverDir, pub)()
	rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pushed == 0 {
		t.Fatalf("the pass pushed nothing: %+v", rep)
	}
	if rep.Failed == 0 {
		t.Errorf("the server's DELETE failed with an error of its disk, and the pass counts nothing failed: %+v", rep)
	}
}

// TestDeleteFailedBesideDeletesOffWaits: two servers, node-a with
// allow_delete off, node-b with it on. node-b's DELETE fails (its disk)
// while node-a refuses it because deletes are off. node-b is a server
// that allows deletes and still holds the account: the delete must wait
// for it, not be taken for final because node-a does not allow deletes.
func TestDeleteFailedBesideDeletesOffWaits(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile, NoDelete: true})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	// node-b allows deletes.
	conf, err := os.ReadFile(nodes[1].conf)
	if err != nil {
		t.Fatal(err)
	}
	on := []byte(strings.Replace(string(conf), "allow_delete: false", "allow_delete: true", 1))
	if string(on) == string(conf) {
		t.Fatal("node-b's config has no allow_delete: false")
	}
	if err := os.WriteFile(nodes[1].conf, on, 0o600); err != nil {
		t.Fatal(err)
	}
	nodes[1].srv.Stop()
	nodes[1].start()
	for nodes[1].srv.NumRoutes() < 1 {
		time.Sleep(20 * time.Millisecond)
	}
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	pub := created.Account.PublicKey
	unblock := blockDelete(t, resolverDirOf(t, nodes[1]), pub)
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != "disabled" {
		t.Errorf("node-b, which allows deletes, failed the DELETE, and the delete is answered %q (waiting %v), want disabled", rep.Phase, rep.Waiting)
	}
	// Once node-b's disk is mended, a pass finishes the delete.
	unblock()
	if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	a, err := d.store.Account(ctx, pub)
	if err != nil || a.Phase != provision.PhaseDeleted {
		t.Errorf("after a pass the store holds %q (%v), want deleted", a.Phase, err)
	}
}

// resolverDirOf reads a node's resolver directory from its config.
func resolverDirOf(t *testing.T, n *clusterNode) string {
	t.Helper()
	conf, err := os.ReadFile(n.conf)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(conf), "\n") {
		var dir string
		if _, err := fmt.Sscanf(line, "  dir: %q", &dir); err == nil {
			return dir
		}
	}
	t.Fatalf("no resolver dir in %s", n.conf)
	return ""
}

// TestFailedDeleteWaitsOnlyForTheServerThatFailed: two servers allow
// deletes; node-a carries out an account's DELETE, node-b fails it (its
// disk). The reply's waiting must name the server still waited for,
// node-b, not every server: node-a deleted the account.
func TestFailedDeleteWaitsOnlyForTheServerThatFailed(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startNodes(t, res, 2)
	d := newClusterDomain(t, res, nodes, time.Hour, nil)
	ctx := context.Background()
	created, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	defer blockDelete(t, resolverDirOf(t, nodes[1]), created.Account.PublicKey)()
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Phase != "disabled" || !slices.Equal(rep.Waiting, []string{"node-b"}) {
		t.Errorf("node-a deleted the account and node-b failed to: the reply says %q waiting %v, want disabled waiting [node-b]", rep.Phase, rep.Waiting)
	}
}

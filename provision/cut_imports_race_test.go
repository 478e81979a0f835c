package provision_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// pauseImportWrite is a file store whose first write, once armed, of one
// account's version holding imports stops until released: the change has
// checked its imports against their exporters' exports, and is not stored
// yet.
type pauseImportWrite struct {
	*filestore.Store
	mu       sync.Mutex
	account  string
	reached  chan struct{}
	released chan struct{}
}

func (p *pauseImportWrite) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	p.mu.Lock()
	hold := false
	if p.account != "" && a.PublicKey == p.account {
		if c, err := jwt.DecodeAccountClaims(a.JWT); err == nil && len(c.Imports) > 0 {
			hold, p.account = true, ""
		}
	}
	p.mu.Unlock()
	if hold {
		close(p.reached)
		<-p.released
	}
	return p.Store.UpdateAccount(ctx, a, rev)
}

// TestExporterChangeDuringAnImportOfIt: an exporter's account.update that
// removes an export, or its account.delete, made while an importer's
// account.update adding an import of that export is between its check of
// the exporter's exports and its store write, answered with no cut import,
// and the importer's update answered success: an import the server drops,
// named by neither reply. The exporter's change now waits for the
// importer's (on this instance), and names the import it cuts.
func TestExporterChangeDuringAnImportOfIt(t *testing.T) {
	t.Parallel()
	for _, del := range []bool{false, true} {
		name := "update"
		if del {
			name = "delete"
		}
		t.Run(name, func(t *testing.T) { exporterChangeDuringImport(t, del) })
	}
}

func exporterChangeDuringImport(t *testing.T, del bool) {
	env := provtest.Deployment(t, bootstrap.Options{})
	fs, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	store := &pauseImportWrite{Store: fs, reached: make(chan struct{}), released: make(chan struct{})}
	svc := domainOver(t, env, store, rawResolver(t, env))
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream},
	}}); err != nil {
		t.Fatal(err)
	}
	beta, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.account = beta.Account.PublicKey
	store.mu.Unlock()
	imported := make(chan error, 1)
	go func() {
		imports := jwt.Imports{{Name: "events", Subject: "alpha.events.>", Account: "alpha", Type: jwt.Stream}}
		_, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports})
		imported <- err
	}()
	select {
	case <-store.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the importer's update never reached its store write")
	}
	type result struct {
		cut []api.CutImport
		err error
	}
	changed := make(chan result, 1)
	go func() {
		if del {
			rep, err := svc.DeleteAccount(ctx, api.AccountRequest{Account: "alpha"})
			if err != nil {
				changed <- result{err: err}
				return
			}
			changed <- result{cut: rep.CutImports}
			return
		}
		rep, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "alpha", Exports: &jwt.Exports{}})
		if err != nil {
			changed <- result{err: err}
			return
		}
		changed <- result{cut: rep.CutImports}
	}()
	// The exporter's change may wait for the importer's; give it the
	// time to answer first if it does not.
	var res result
	answered := false
	select {
	case res = <-changed:
		answered = true
	case <-time.After(2 * time.Second):
	}
	close(store.released)
	if !answered {
		res = <-changed
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if err := <-imported; err != nil {
		t.Logf("the importer's update failed: %v", err)
		return
	}
	if got, want := cutList(res.cut), []string{"beta alpha.events.>"}; !slices.Equal(got, want) {
		t.Fatalf("the importer's update answered success, and the exporter's %s during it names cut imports %q, want %q (answered during the importer's write: %t)", map[bool]string{false: "update", true: "delete"}[del], got, want, answered)
	}
}

package provision_test

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

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
		t.Run(map[bool]string{false: "update", true: "delete"}[del], func(t *testing.T) { exporterChangeDuringImport(t, del, false) })
	}
}

// TestExporterChangeDuringAnImportWithItsToken: the same, for an import of
// a managed account's private export that carries its activation token
// (one the caller kept, e.g. sent back from the account's imports): the
// importer's change took no signing lock of the exporter for it.
func TestExporterChangeDuringAnImportWithItsToken(t *testing.T) {
	t.Parallel()
	for _, del := range []bool{false, true} {
		t.Run(map[bool]string{false: "update", true: "delete"}[del], func(t *testing.T) { exporterChangeDuringImport(t, del, true) })
	}
}

// exporterChangeDuringImport runs the exporter's update (or delete, del)
// while the importer's update is held at its store write; withToken makes
// the export private and gives the import its activation token.
func exporterChangeDuringImport(t *testing.T, del, withToken bool) {
	env := provtest.Deployment(t, bootstrap.Options{})
	fs, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	store := &pauseImportWrite{Store: fs, reached: make(chan struct{}), released: make(chan struct{})}
	svc := domainOver(t, env, store, rawResolver(t, env))
	ctx := context.Background()
	alpha, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: withToken},
	}})
	if err != nil {
		t.Fatal(err)
	}
	beta, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	im := &jwt.Import{Name: "events", Subject: "alpha.events.>", Account: "alpha", Type: jwt.Stream}
	if withToken {
		// An activation for beta, signed by alpha's identity key.
		stored, err := fs.Account(ctx, alpha.Account.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		kp, err := nkeys.FromSeed([]byte(stored.IdentitySeed))
		if err != nil {
			t.Fatal(err)
		}
		act := jwt.NewActivationClaims(beta.Account.PublicKey)
		act.ImportSubject, act.ImportType = "alpha.events.>", jwt.Stream
		if im.Token, err = act.Encode(kp); err != nil {
			t.Fatal(err)
		}
	}
	store.mu.Lock()
	store.account = beta.Account.PublicKey
	store.mu.Unlock()
	imported := make(chan error, 1)
	go func() {
		imports := jwt.Imports{im}
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
		var res result
		if del {
			var rep *api.DeleteAccountReply
			if rep, res.err = svc.DeleteAccount(ctx, api.AccountRequest{Account: "alpha"}); res.err == nil {
				res.cut = rep.CutImports
			}
		} else {
			var rep *api.AccountReply
			if rep, res.err = svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "alpha", Exports: &jwt.Exports{}}); res.err == nil {
				res.cut = rep.CutImports
			}
		}
		changed <- res
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
		t.Fatalf("the importer's update (token given: %t) answered success, and the exporter's %s during it names cut imports %q, want %q (answered during the importer's write: %t)", withToken, map[bool]string{false: "update", true: "delete"}[del], got, want, answered)
	}
}

package provision_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provtest"
)

// TestExporterChangeDuringAnImportWithItsToken: as
// TestExporterChangeDuringAnImportOfIt, for an import of a managed
// account's private export that carries its activation token (one the
// caller kept, e.g. sent back from the account's imports): the importer's
// change took no signing lock of the exporter for it, so the exporter's
// update or delete, made while the importer's change was between its check
// of the exports and its store write, named no cut import, and the
// importer's change answered success.
func TestExporterChangeDuringAnImportWithItsToken(t *testing.T) {
	t.Parallel()
	for _, del := range []bool{false, true} {
		name := "update"
		if del {
			name = "delete"
		}
		t.Run(name, func(t *testing.T) { exporterChangeDuringTokenImport(t, del) })
	}
}

func exporterChangeDuringTokenImport(t *testing.T, del bool) {
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
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	beta, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
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
	token, err := act.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	store.account = beta.Account.PublicKey
	store.mu.Unlock()
	imported := make(chan error, 1)
	go func() {
		imports := jwt.Imports{{Name: "events", Subject: "alpha.events.>", Account: "alpha", Type: jwt.Stream, Token: token}}
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
		t.Fatalf("the importer's update (its token given) answered success, and the exporter's %s during it names cut imports %q, want %q (answered during the importer's write: %t)", map[bool]string{false: "update", true: "delete"}[del], got, want, answered)
	}
}

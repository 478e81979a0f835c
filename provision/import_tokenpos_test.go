package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestImportOfAccountTokenPositionExport: an export with
// account_token_position serves an importer only the subjects holding the
// importer's own key at that position. An import of another account's
// subject (or of the export's wildcard) is one the server leaves out of
// the account (it logs it and takes the JWT): it must be refused (400)
// before anything is pushed, not answered as done while nothing crosses.
func TestImportOfAccountTokenPositionExport(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "per-account", Subject: "req.*", Type: jwt.Service, AccountTokenPosition: 2},
	}}); err != nil {
		t.Fatal(err)
	}
	beta, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	gamma, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "server"})
	srv := dial(t, env, alphaCreds)
	if _, err := srv.Subscribe("req.*", func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	srv.Flush()
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "client"})

	for _, subj := range []string{"req." + gamma.Account.PublicKey, "req.*"} {
		imports := jwt.Imports{{Name: "other", Subject: jwt.Subject(subj), LocalSubject: "mine", Account: "alpha", Type: jwt.Service}}
		_, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports})
		if errors.Is(err, provision.ErrInvalid) {
			continue
		}
		if err != nil {
			t.Fatalf("import of %s: %v, want ErrInvalid", subj, err)
		}
		cli := dial(t, env, betaCreds)
		_, rerr := cli.Request("mine", nil, time.Second)
		cli.Close()
		t.Fatalf("import of %s accepted, and a request across it: %v; want ErrInvalid", subj, rerr)
	}

	// Its own subject is taken, and the server serves it.
	imports := jwt.Imports{{Name: "own", Subject: jwt.Subject("req." + beta.Account.PublicKey), LocalSubject: "mine", Account: "alpha", Type: jwt.Service}}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports}); err != nil {
		t.Fatal(err)
	}
	cli := dial(t, env, betaCreds)
	if m, err := cli.Request("mine", nil, 2*time.Second); err != nil || string(m.Data) != "ok" {
		t.Fatalf("beta's own import: %v", err)
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// holdAccount is a resolver whose first push of one account's JWT, once
// armed, stops until released and then fails: the change that made it is
// put back.
type holdAccount struct {
	provision.Resolver
	mu       sync.Mutex
	account  string
	reached  chan struct{}
	released chan struct{}
	done     bool
}

func (h *holdAccount) Update(ctx context.Context, token string) (provision.PushResult, error) {
	h.mu.Lock()
	hold := false
	if h.account != "" && !h.done {
		if c, err := jwt.DecodeAccountClaims(token); err == nil && c.Subject == h.account {
			h.done, hold = true, true
		}
	}
	h.mu.Unlock()
	if !hold {
		return h.Resolver.Update(ctx, token)
	}
	close(h.reached)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.released:
		return nil, errors.New("the process is gone")
	}
}

func (h *holdAccount) arm(account string) {
	h.mu.Lock()
	h.account = account
	h.mu.Unlock()
}

// TestImportDuringFailedRotateOfItsExporter: an account.update (or
// account.create) adding an import of a private export of a managed account, while that account's
// rotation is between its store write and its push, must not sign the
// activation with the rotation's new key: the push fails, the rotation is
// put back, the key never reaches the servers, and the server leaves the
// import out for good while the update answered success.
func TestImportDuringFailedRotateOfItsExporter(t *testing.T) {
	t.Parallel()
	for _, create := range []bool{false, true} {
		name := "update"
		if create {
			name = "create"
		}
		t.Run(name, func(t *testing.T) { importDuringFailedRotate(t, create) })
	}
}

// importDuringFailedRotate adds the import with an account.update of an
// account created first, or with the account.create of a new one.
func importDuringFailedRotate(t *testing.T, create bool) {
	env := provtest.Deployment(t, bootstrap.Options{})
	h := &holdAccount{reached: make(chan struct{}), released: make(chan struct{})}
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { h.Resolver = r; return h })
	defer d.stop()
	ctx := context.Background()
	alpha, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "secret", Subject: "secret.get", Type: jwt.Service, TokenReq: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !create {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"}); err != nil {
			t.Fatal(err)
		}
	}
	h.arm(alpha.Account.PublicKey)
	rotated := make(chan error, 1)
	go func() {
		_, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "alpha"})
		rotated <- err
	}()
	select {
	case <-h.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the rotation never reached its push")
	}
	updated := make(chan error, 1)
	go func() {
		imports := jwt.Imports{{Name: "secret", Subject: "secret.get", Account: "alpha", Type: jwt.Service}}
		var err error
		if create {
			_, err = d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: imports})
		} else {
			_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports})
		}
		updated <- err
	}()
	// The update may wait for the rotation; give it the time to answer
	// first if it does not.
	var uerr error
	answered := false
	select {
	case uerr = <-updated:
		answered = true
		t.Log("the importer's change answered during the exporter's rotation's push")
	case <-time.After(time.Second):
	}
	close(h.released)
	if err := <-rotated; err == nil {
		t.Fatal("the rotation succeeded; its push failed")
	}
	if !answered {
		uerr = <-updated
	}
	if uerr != nil {
		t.Logf("the racing change failed: %v", uerr)
		return
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "server"})
	srv := dial(t, env, alphaCreds)
	if _, err := srv.Subscribe("secret.get", func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	srv.Flush()
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "client"})
	cli := dial(t, env, betaCreds)
	if _, err := cli.Request("secret.get", nil, 2*time.Second); err != nil {
		t.Errorf("the importer's change answered success, but nothing crosses its import (%v): its activation was signed by the key of the exporter's rotation that failed and was put back", err)
	}
}

// pauseUsersNamed is a file store whose UsersNamed stops, once for each
// name in it, until that name's release is closed: a user.create then
// holds its account's signing lock shared.
type pauseUsersNamed struct {
	*filestore.Store
	mu      sync.Mutex
	reached map[string]chan struct{}
	release map[string]chan struct{}
}

func (p *pauseUsersNamed) UsersNamed(ctx context.Context, account, name string) ([]provision.User, error) {
	p.mu.Lock()
	reached, release := p.reached[name], p.release[name]
	delete(p.reached, name)
	p.mu.Unlock()
	if reached != nil {
		close(reached)
		<-release
	}
	return p.Store.UsersNamed(ctx, account, name)
}

// TestUpdatesImportingFromEachOther: two accounts' updates, each changing
// its roles (its own signing lock, taken exclusively) and importing a
// private export of the other (the other's signing lock, taken shared, to
// sign its activation), neither waits for the other for good, whichever
// comes first: the first held back by a user.create of its account, the
// second begun meanwhile. And each import crosses.
func TestUpdatesImportingFromEachOther(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	fs, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	store := &pauseUsersNamed{Store: fs, reached: map[string]chan struct{}{}, release: map[string]chan struct{}{}}
	svc := domainOver(t, env, store, rawResolver(t, env))
	ctx := context.Background()
	for _, name := range []string{"alpha", "beta"} {
		if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name, Exports: jwt.Exports{
			{Name: "secret", Subject: jwt.Subject(name + ".get"), Type: jwt.Service, TokenReq: true},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	update := func(name, from string, round int, errs chan<- error) {
		imports := jwt.Imports{{Name: "secret", Subject: jwt.Subject(from + ".get"), Account: from, Type: jwt.Service}}
		_, err := svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: name, Imports: &imports, Roles: map[string]*api.Role{
			"device": {Pub: &jwt.Permission{Allow: jwt.StringList{fmt.Sprintf("round%d.>", round)}}},
		}})
		errs <- err
	}
	for round, pair := range [][2]string{{"alpha", "beta"}, {"beta", "alpha"}} {
		first, second := pair[0], pair[1]
		held := "held-" + first
		reached, release := make(chan struct{}), make(chan struct{})
		store.mu.Lock()
		store.reached[held], store.release[held] = reached, release
		store.mu.Unlock()
		issued := make(chan error, 1)
		go func() {
			_, err := svc.CreateUser(ctx, api.CreateUserRequest{Account: first, Name: held})
			issued <- err
		}()
		select {
		case <-reached:
		case <-time.After(10 * time.Second):
			t.Fatal("user.create never looked up its name")
		}
		errs := make(chan error, 2)
		go update(first, second, round, errs)
		time.Sleep(time.Second) // waits for the user.create
		go update(second, first, round, errs)
		time.Sleep(time.Second)
		close(release)
		for range 2 {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the updates of %s and %s, each importing from the other, never ended: each waits for the other's signing lock", first, second)
			}
		}
		if err := <-issued; err != nil {
			t.Fatal(err)
		}
	}
	other := map[string]string{"alpha": "beta", "beta": "alpha"}
	for name, from := range other {
		fromCreds := writeCreds(t, mustUser(t, svc, from, "server"))
		srv := dial(t, env, fromCreds)
		if _, err := srv.Subscribe(from+".get", func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
			t.Fatal(err)
		}
		srv.Flush()
		creds := writeCreds(t, mustUser(t, svc, name, "client"))
		if _, err := dial(t, env, creds).Request(from+".get", nil, 2*time.Second); err != nil {
			t.Errorf("%s's import of %s's private export: %v", name, from, err)
		}
	}
}

func mustUser(t *testing.T, svc *provision.Service, account, name string) api.User {
	t.Helper()
	rep, err := svc.CreateUser(context.Background(), api.CreateUserRequest{Account: account, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return rep.User
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// lagUntilSeen is an instance's mirror of the bucket that shows the
// accounts as they were when stale was set, until the instance asks it to
// catch up with a revision (SeenThrough).
type lagUntilSeen struct {
	*kvstore.Store
	stale atomic.Pointer[[]provision.Account]
	// stalled: SeenThrough fails, the copy still lagging, as when the
	// wait for the store's watcher ends.
	stalled atomic.Bool
}

func (l *lagUntilSeen) freeze(t *testing.T) {
	t.Helper()
	all, err := l.Store.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.stale.Store(&all)
}

func (l *lagUntilSeen) Account(ctx context.Context, pub string) (provision.Account, error) {
	if s := l.stale.Load(); s != nil {
		if i := slices.IndexFunc(*s, func(a provision.Account) bool { return a.PublicKey == pub }); i >= 0 {
			return (*s)[i], nil
		}
	}
	return l.Store.Account(ctx, pub)
}

func (l *lagUntilSeen) AccountByName(ctx context.Context, name string) (provision.Account, error) {
	if s := l.stale.Load(); s != nil {
		if i := slices.IndexFunc(*s, func(a provision.Account) bool { return a.Name == name && a.Live() }); i >= 0 {
			return (*s)[i], nil
		}
	}
	return l.Store.AccountByName(ctx, name)
}

func (l *lagUntilSeen) Accounts(ctx context.Context) ([]provision.Account, error) {
	if s := l.stale.Load(); s != nil {
		return slices.Clone(*s), nil
	}
	return l.Store.Accounts(ctx)
}

func (l *lagUntilSeen) SeenThrough(ctx context.Context, rev uint64) error {
	if l.stalled.Load() {
		return fmt.Errorf("%w: the watcher is stalled", provision.ErrUnavailable)
	}
	l.stale.Store(nil)
	return l.Store.SeenThrough(ctx, rev)
}

// lagInstances opens instances a and b of a KV deployment, each on its
// lagUntilSeen (nil: on its store as it is).
func lagInstances(t *testing.T, lagA, lagB *lagUntilSeen) (a, b *provision.Service) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	open := func(instance string, lag *lagUntilSeen) *provision.Service {
		t.Helper()
		svc, _ := kvDomainOf(t, env, instance, nil, func(c *provision.Config) {
			if lag != nil {
				lag.Store = c.Store.(*kvstore.Store)
				c.Store = lag
			}
		})
		return svc
	}
	return open("a", lagA), open("b", lagB)
}

// createAlpha creates on svc account alpha exporting stream "events" on
// alpha.events.>.
func createAlpha(t *testing.T, svc *provision.Service) *api.AccountReply {
	t.Helper()
	alpha, err := svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return alpha
}

// alphaEvents is an import of stream "events" on alpha.events.> (as
// createAlpha exports it) from the account whose public key is pub.
func alphaEvents(pub string) jwt.Imports {
	return jwt.Imports{{Name: "events", Subject: "alpha.events.>", Account: pub, Type: jwt.Stream}}
}

// TestExporterDeleteAndAnImportOfItOnTwoInstances: the signing locks that
// order an exporter's delete and an importer's import of it are each
// instance's own. On two instances, each checked the other's account in a
// mirror that had not seen the other's change: the import of a deleted
// account was stored and answered success, and the delete's reply named
// no cut import (the server drops such an import without a word). Checked
// again once its own change is stored, in the bucket's order, one of them
// sees the other: the delete names the import stored before it, and an
// import stored after the delete is refused.
func TestExporterDeleteAndAnImportOfItOnTwoInstances(t *testing.T) {
	t.Parallel()
	for _, importFirst := range []bool{true, false} {
		t.Run(map[bool]string{true: "import first", false: "delete first"}[importFirst], func(t *testing.T) {
			lagA, lagB := &lagUntilSeen{}, &lagUntilSeen{}
			a, b := lagInstances(t, lagA, lagB)
			ctx := context.Background()
			alpha := createAlpha(t, a)
			beta, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta"})
			if err != nil {
				t.Fatal(err)
			}
			imports := alphaEvents(alpha.Account.PublicKey)
			// Neither instance's mirror sees the other's change.
			lagA.freeze(t)
			lagB.freeze(t)
			importBeta := func() error {
				_, err := b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: beta.Account.PublicKey, Imports: &imports})
				return err
			}
			var del *api.DeleteAccountReply
			var imErr error
			if importFirst {
				imErr = importBeta()
				del, err = a.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey})
			} else {
				del, err = a.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey})
				imErr = importBeta()
			}
			if err != nil {
				t.Fatal(err)
			}
			named := slices.ContainsFunc(del.CutImports, func(c api.CutImport) bool { return c.Account == beta.Account.PublicKey })
			switch {
			case importFirst && imErr != nil:
				t.Fatalf("beta's import, stored before alpha's delete: %v", imErr)
			case importFirst && !named:
				t.Errorf("alpha's delete after beta's import of it on another instance named no cut import: %+v", del.CutImports)
			case !importFirst && imErr == nil:
				t.Errorf("beta's import of alpha on another instance after alpha's delete answered success; the delete named %d cut imports", len(del.CutImports))
			case !importFirst && !errors.Is(imErr, provision.ErrInvalid):
				t.Errorf("beta's import of deleted alpha: %v, want a 400", imErr)
			}
		})
	}
}

// TestCreateImportingAnExporterDeletedOnAnotherInstance: as above, for an
// import given at create. The new account's imports were checked in its
// instance's mirror, which did not hold the exporter's delete another
// instance had stored: the account was created with an import the
// servers drop, answered success, and the delete had named no cut import.
// Checked again once the create is stored, it is refused (400) and
// nothing of it stays.
func TestCreateImportingAnExporterDeletedOnAnotherInstance(t *testing.T) {
	t.Parallel()
	lagB := &lagUntilSeen{}
	a, b := lagInstances(t, nil, lagB)
	ctx := context.Background()
	alpha := createAlpha(t, a)
	lagB.freeze(t)
	if _, err := a.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey}); err != nil {
		t.Fatal(err)
	}
	beta, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: alphaEvents(alpha.Account.PublicKey)})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("beta's create on instance b importing alpha, deleted on instance a: %+v, %v; want a 400", beta, err)
	}
	if got, err := a.GetAccount(ctx, api.AccountRequest{Account: "beta"}); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("after the refused create the store holds beta: %+v, %v", got, err)
	}
}

// TestCutImportsFromALaggingCopySaySo: when the wait for the store's copy to
// hold every account stored before the exporter's change fails (its
// watcher stalled), the imports it cut off are listed from a copy that may
// lack another instance's import. That was only logged: the reply's empty
// cut_imports read as "nothing was cut off". The reply says the list may
// be incomplete, for an update of exports and for a delete.
func TestCutImportsFromALaggingCopySaySo(t *testing.T) {
	t.Parallel()
	lagA := &lagUntilSeen{}
	a, b := lagInstances(t, lagA, nil)
	ctx := context.Background()
	exports := jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream},
		{Name: "audit", Subject: "alpha.audit.>", Type: jwt.Stream},
	}
	alpha, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: exports})
	if err != nil {
		t.Fatal(err)
	}
	// Instance a's copy does not see beta's imports, stored on b, and
	// cannot catch up.
	lagA.freeze(t)
	lagA.stalled.Store(true)
	imports := jwt.Imports{
		{Name: "events", Subject: "alpha.events.>", Account: alpha.Account.PublicKey, Type: jwt.Stream},
		{Name: "audit", Subject: "alpha.audit.>", Account: alpha.Account.PublicKey, Type: jwt.Stream},
	}
	if _, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: imports}); err != nil {
		t.Fatal(err)
	}
	narrowed := exports[1:]
	up, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: alpha.Account.PublicKey, Exports: &narrowed})
	if err != nil {
		t.Fatal(err)
	}
	if len(up.CutImports) == 0 && up.CutImportsIncomplete == "" {
		t.Errorf("alpha's update of exports, listed from a lagging copy, named no cut import and did not say the list may be incomplete: %+v", up)
	}
	del, err := a.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.CutImports) == 0 && del.CutImportsIncomplete == "" {
		t.Errorf("alpha's delete, listed from a lagging copy, named no cut import and did not say the list may be incomplete: %+v", del)
	}
	// Caught up, the list is whole and says nothing more.
	lagA.stalled.Store(false)
	gamma, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma", Exports: exports})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "delta", Imports: alphaEvents(gamma.Account.PublicKey)}); err != nil {
		t.Fatal(err)
	}
	del, err = a.DeleteAccount(ctx, api.AccountRequest{Account: gamma.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if len(del.CutImports) != 1 || del.CutImportsIncomplete != "" {
		t.Errorf("gamma's delete from a copy that caught up: %+v", del)
	}
}

// TestCreateImportingWithAKeyRemovedOnAnotherInstance: a new account's
// import of a private export, its activation signed on instance b with the
// exporter's signing key as b's copy of the store held it, while instance
// a's rotation with revoke_old had removed that key. Checked again once the
// create is stored, the import is refused (400), and the error says why:
// told the exporter "no longer exports it to this account", its caller
// looked at exports that had not changed.
func TestCreateImportingWithAKeyRemovedOnAnotherInstance(t *testing.T) {
	t.Parallel()
	lagB := &lagUntilSeen{}
	a, b := lagInstances(t, nil, lagB)
	ctx := context.Background()
	alpha, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	imports := alphaEvents(alpha.Account.PublicKey)
	// Instance b has signed an activation with alpha's key.
	if _, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma", Imports: imports}); err != nil {
		t.Fatal(err)
	}
	lagB.freeze(t)
	if _, err := a.RotateAccount(ctx, api.RotateAccountRequest{Account: alpha.Account.PublicKey, RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	beta, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: imports})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("beta's create on instance b importing alpha, whose key instance a removed: %+v, %v; want a 400", beta, err)
	}
	if msg := err.Error(); strings.Contains(msg, "no longer exports") || !strings.Contains(msg, "signing key") {
		t.Errorf("beta's create refused with %q, want it to say alpha's signing key that signed the activation was removed", msg)
	}
}

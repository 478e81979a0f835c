package provision_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// restartAtFinal, once armed, restarts the server from an old disk when
// the delete's finished tombstone is written (after finishDelete's last
// check), and writes it only once Run has handled the server's return.
type restartAtFinal struct {
	provision.Store
	w     *restartAfterPush
	armed atomic.Bool
}

func (r *restartAtFinal) UpdateAccount(ctx context.Context, a provision.Account, rev uint64) (uint64, error) {
	if a.Phase == provision.PhaseDeleted && r.armed.CompareAndSwap(true, false) {
		r.w.restarting.Store(true)
		r.w.restart()
		<-r.w.handled
	}
	return r.Store.UpdateAccount(ctx, a, rev)
}

// TestDeleteRepairedAfterARestartPastItsLastCheck: the server restarts from
// an old disk (holding the account live) after the delete's last check,
// before its tombstone is final. The delete may answer "deleted"; the pass
// the server's return starts must take the account from it again, where
// servers allow deletes and where they do not.
func TestDeleteRepairedAfterARestartPastItsLastCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts bootstrap.Options
	}{{"allow_delete", bootstrap.Options{}}, {"no_delete", bootstrap.Options{NoDelete: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := provtest.Deployment(t, tc.opts)
			w := newRestartAfterPush()
			st := &restartAtFinal{w: w}
			d, pub, live, release, done := restartFromOldDisk(t, env, w, w, func(c *provision.Config) {
				st.Store = c.Store
				c.Store = st
			})
			defer done()
			ctx := context.Background()
			u, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: pub, Name: "u"})
			if err != nil {
				t.Fatal(err)
			}
			creds := writeCreds(t, u.User)
			if !connects(env, creds) {
				t.Fatal("the user cannot connect before the delete")
			}
			st.armed.Store(true)
			rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: pub})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("delete: phase %s, waiting %v", rep.Phase, rep.Waiting)
			release()
			if _, err := d.svc.Reconcile(ctx, api.ReconcileRequest{}); err != nil {
				t.Fatal(err)
			}
			tomb, err := d.store.Account(ctx, pub)
			if err != nil {
				t.Fatalf("the tombstone is gone: %v", err)
			}
			for _, c := range d.lookupAll(t, pub) {
				if c == live || c != "" && c != tomb.JWT {
					t.Errorf("after a pass, the server holds a version that is not the tombstone's (live: %v)", c == live)
				}
			}
			if connects(env, creds) {
				t.Error("the deleted account's user connects after a pass")
			}
		})
	}
}

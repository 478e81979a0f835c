package provision_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// pauseNamed is a file store whose UsersNamed, for one name, stops until
// released: a user.create has then chosen its signing key and not yet
// signed.
type pauseNamed struct {
	*filestore.Store
	name    string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (p *pauseNamed) UsersNamed(ctx context.Context, account, name string) ([]provision.User, error) {
	if name == p.name {
		p.once.Do(func() {
			close(p.reached)
			<-p.release
		})
	}
	return p.Store.UsersNamed(ctx, account, name)
}

// TestIssueRacingRotateRevokeOld: a user.create that chose the account's
// signing key just before a rotation with revoke_old removed that key must
// not hand out creds that the servers refuse: the user it answers with
// must be able to connect.
func TestIssueRacingRotateRevokeOld(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	fs, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	store := &pauseNamed{Store: fs, name: "late", reached: make(chan struct{}), release: make(chan struct{})}
	svc := domainOver(t, env, store, rawResolver(t, env))
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}

	var order atomic.Int32
	type result struct {
		rep *api.CreateUserReply
		err error
		at  int32
	}
	done := make(chan result, 1)
	go func() {
		rep, err := svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "late"})
		done <- result{rep, err, order.Add(1)}
	}()
	select {
	case <-store.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("user.create never looked up its name")
	}
	rotated := make(chan result, 1)
	go func() {
		_, err := svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme", RevokeOld: true})
		rotated <- result{err: err, at: order.Add(1)}
	}()
	// The rotation may wait for the create; give it the time to land
	// first if it does not.
	time.Sleep(time.Second)
	close(store.release)
	c, r := <-done, <-rotated
	if r.err != nil {
		t.Fatal(r.err)
	}
	if c.err != nil {
		t.Logf("the racing create failed: %v", c.err)
		return
	}
	// A user answered before the rotation is a user of the old key, which
	// revoke_old cuts off; one answered after it must work.
	if c.at > r.at && !connects(env, writeCreds(t, c.rep.User)) {
		t.Errorf("user.create answered after the rotation with creds signed by a signing key the rotation removed: they cannot connect")
	}
	if c.at < r.at {
		t.Logf("the create was answered before the rotation")
	}
}

// TestIssueDuringFailedRotate: a user.create on the instance of a
// rotation (without revoke_old) whose push then fails must not answer with
// creds of the rotation's new key, which the put-back removes: they would
// never connect.
func TestIssueDuringFailedRotate(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	fs, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	b := &blockingResolver{Resolver: rawResolver(t, env), armed: make(chan struct{}), reached: make(chan struct{}), released: make(chan struct{})}
	svc := domainOver(t, env, fs, b)
	ctx := context.Background()
	if _, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	close(b.armed)
	rotated := make(chan error, 1)
	go func() {
		_, err := svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme"})
		rotated <- err
	}()
	select {
	case <-b.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the rotation never reached its push")
	}
	type result struct {
		rep *api.CreateUserReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "dev"})
		done <- result{rep, err}
	}()
	// The create may wait for the rotation; give it the time to answer
	// first if it does not.
	var c result
	answered := false
	select {
	case c = <-done:
		answered = true
		t.Log("user.create answered during the rotation's push")
	case <-time.After(time.Second):
	}
	close(b.released)
	if err := <-rotated; err == nil {
		t.Fatal("the rotation succeeded; its push failed")
	}
	if !answered {
		c = <-done
	}
	if c.err != nil {
		t.Logf("the racing create failed: %v", c.err)
		return
	}
	if !connects(env, writeCreds(t, c.rep.User)) {
		t.Errorf("user.create answered with creds that cannot connect: signed by the key of a rotation that failed and was put back")
	}
}

package provision_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// domain is a provision.Service built by hand on a real deployment, so
// that a test can wrap its resolver or its store.
type domain struct {
	env   *provtest.Env
	svc   *provision.Service
	store *filestore.Store
	rc    *resolver.Client
	op    *provision.Operator
}

// newDomain starts the domain on env's store directory with the resolver
// wrapped by wrap (nil: as it is).
func newDomain(t *testing.T, env *provtest.Env, wrap func(provision.Resolver) provision.Resolver, tune ...func(*provision.Config)) *domain {
	t.Helper()
	d := &domain{env: env}
	var err error
	d.op, err = provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := env.Config.StoreDir
	if dir == "" {
		dir = filepath.Join(env.Dir, "domain-store")
	}
	d.store, err = filestore.Open(dir, filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	nc := env.Connect(t, env.Init.ProvisionerCreds, nats.ReconnectBufSize(-1))
	d.rc, err = resolver.New(context.Background(), nc, resolver.Options{Timeout: 2 * time.Second, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var r provision.Resolver = d.rc
	if wrap != nil {
		r = wrap(d.rc)
	}
	cfg := provision.Config{
		Operator:  d.op,
		Store:     d.store,
		Resolver:  r,
		Protected: []string{env.Init.ServiceAccount},
		Logger:    provtest.Logger(t),
	}
	for _, f := range tune {
		f(&cfg)
	}
	d.svc, err = provision.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// stop stops the domain as a clean shutdown does.
func (d *domain) stop() {
	d.svc.Close()
	d.rc.Close()
	d.store.Close()
}

// lookupAll returns every server's copy of an account's JWT.
func (d *domain) lookupAll(t *testing.T, pub string) []string {
	t.Helper()
	copies, err := d.rc.LookupAll(context.Background(), pub)
	if err != nil {
		t.Fatal(err)
	}
	return copies
}

func writeCreds(t *testing.T, u api.User) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), u.Name+".creds")
	if err := os.WriteFile(p, []byte(u.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func connects(env *provtest.Env, creds string) bool {
	nc, err := nats.Connect(env.Server.URL(), nats.UserCredentials(creds), nats.NoReconnect())
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

// TestVersionsMoveForward sends concurrent revokes to one account: every
// one lands, in versions whose iat strictly grows, so resolver sync can
// never swap two of them.
func TestVersionsMoveForward(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	acct, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	keys := make([]string, n)
	for i := range keys {
		kp, _ := nkeys.CreateUser()
		keys[i], _ = kp.PublicKey()
	}
	var mu sync.Mutex
	versions := map[string]int64{} // JWT -> iat
	var wg sync.WaitGroup
	start := time.Now()
	for i, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread over more than a second: several versions, each
			// holding the revokes that arrived while the last was made.
			time.Sleep(time.Duration(i) * 60 * time.Millisecond)
			rep, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: k})
			if err != nil {
				t.Errorf("revoke %s: %v", k, err)
				return
			}
			c, err := jwt.DecodeAccountClaims(rep.Account.JWT)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			versions[rep.Account.JWT] = c.IssuedAt
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent revokes on one account took %s in %d versions", n, time.Since(start).Round(time.Millisecond), len(versions))
	if len(versions) < 2 || len(versions) > n/2 {
		t.Errorf("%d revokes made %d versions; want them combined into a few", n, len(versions))
	}
	iats := []int64{}
	for _, iat := range versions {
		iats = append(iats, iat)
	}
	slices.Sort(iats)
	if len(slices.Compact(slices.Clone(iats))) != len(iats) {
		t.Errorf("two versions share an iat: %v", iats)
	}
	first, _ := jwt.DecodeAccountClaims(acct.Account.JWT)
	if iats[0] <= first.IssuedAt {
		t.Errorf("a revoke's version has iat %d, not after the create's %d", iats[0], first.IssuedAt)
	}
	for _, copy := range d.lookupAll(t, acct.Account.PublicKey) {
		c, err := jwt.DecodeAccountClaims(copy)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if _, ok := c.Revocations[k]; !ok {
				t.Errorf("the server's JWT lacks the revocation of %s", k)
			}
		}
	}
}

// blockingResolver stands for a process that stops between a change's store
// write and its push: from the armed moment on, pushes never leave.
type blockingResolver struct {
	provision.Resolver
	armed   chan struct{}
	reached chan struct{}
	// released ends the blocked push at once, as a failure.
	released chan struct{}
	once     sync.Once
}

func (b *blockingResolver) Update(ctx context.Context, token string) (provision.PushResult, error) {
	select {
	case <-b.armed:
		b.once.Do(func() { close(b.reached) })
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-b.released:
			return nil, errors.New("the process is gone")
		}
	default:
		return b.Resolver.Update(ctx, token)
	}
}

// TestInterruptedRevokeIsFinished: a revoke stopped between its store
// write and its push (the process died there) is on the servers within the
// first reconcile pass of the next start: the user cannot connect, the
// listing says revoked, and revoking again by key works.
func TestInterruptedRevokeIsFinished(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	b := &blockingResolver{armed: make(chan struct{}), reached: make(chan struct{}), released: make(chan struct{})}
	first := newDomain(t, env, func(r provision.Resolver) provision.Resolver { b.Resolver = r; return b })
	ctx := context.Background()
	if _, err := first.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	alice, err := first.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	creds := writeCreds(t, alice.User)
	if !connects(env, creds) {
		t.Fatal("alice cannot connect before the revoke")
	}
	close(b.armed)
	abandoned := make(chan struct{})
	go func() {
		defer close(abandoned)
		first.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: "alice"})
	}()
	// The dead process's revoke must not log into the test after it has
	// ended (its push times out long after): end it while it may, cut as
	// a kill would (Halt): released alone, its put-back retried the
	// closed store for landedWait (15 s).
	t.Cleanup(func() {
		first.svc.Halt()
		close(b.released)
		<-abandoned
		first.svc.Close() // waits for the account's worker
	})
	select {
	case <-b.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoke never reached its push")
	}
	// The process dies here: nothing of it runs on. Its store is released
	// as the kernel releases a dead process's lock.
	first.store.Close()
	first.rc.Close()
	if !connects(env, creds) {
		t.Fatal("the test is wrong: alice is out before the push")
	}

	second := newDomain(t, env, nil)
	defer second.stop()
	rep, err := second.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pushed != 1 || rep.Failed != 0 {
		t.Errorf("the first pass after the restart = %+v, want the one interrupted account pushed", rep)
	}
	if connects(env, creds) {
		t.Error("alice connects after the restart: the interrupted revoke is not on the server")
	}
	users, err := second.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil || len(users.Users) != 1 || !users.Users[0].Revoked {
		t.Errorf("user.list after the restart = %+v, %v; want alice revoked", users, err)
	}
	if _, err := second.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: alice.User.PublicKey}); err != nil {
		t.Errorf("revoking alice again by key: %v", err)
	}
	// And the key can never be issued again.
	_, err = second.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "again", PublicKey: alice.User.PublicKey})
	if !errors.Is(err, provision.ErrConflict) {
		t.Errorf("re-issuing alice's key after its revoke: %v, want a conflict", err)
	}
}

// TestReconcileRepairsDrift: what happened on the servers behind the
// service's back is put right by one pass — an account deleted there comes
// back, an older version pushed over the current one is replaced — and an
// account the service does not know is reported as an orphan and left
// alone.
func TestReconcileRepairsDrift(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	gone, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gone"})
	if err != nil {
		t.Fatal(err)
	}
	old, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "stale"})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "stale", Limits: &api.AccountLimits{Conn: ptr(int64(5))}})
	if err != nil {
		t.Fatal(err)
	}
	// Behind the service's back: a delete, a stale push, a stranger.
	del := jwt.NewGenericClaims(d.op.SignerKey)
	del.Data["accounts"] = []string{gone.Account.PublicKey}
	token, err := del.Encode(d.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Delete(ctx, token); err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, old.Account.JWT); err != nil {
		t.Fatal(err)
	}
	strangerKP, _ := nkeys.CreateAccount()
	stranger, _ := strangerKP.PublicKey()
	sc := jwt.NewAccountClaims(stranger)
	sc.Name = "stranger"
	st, err := sc.Encode(d.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, st); err != nil {
		t.Fatal(err)
	}

	rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pushed != 2 || !slices.Equal(rep.Orphans, []string{stranger}) || rep.Failed != 0 {
		t.Errorf("reconcile = %+v, want 2 pushed and the stranger as the one orphan", rep)
	}
	if got := d.lookupAll(t, gone.Account.PublicKey); len(got) != 1 || got[0] != gone.Account.JWT {
		t.Errorf("the deleted account is not back on the server")
	}
	if got := d.lookupAll(t, old.Account.PublicKey); len(got) != 1 || got[0] != cur.Account.JWT {
		t.Errorf("the server keeps the stale version")
	}
	if got := d.lookupAll(t, stranger); len(got) != 1 || got[0] != st {
		t.Errorf("the orphan was touched")
	}
	// A second pass finds nothing to do.
	rep, err = d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pushed != 0 || rep.Checked != 2 || len(rep.Orphans) != 1 {
		t.Errorf("second reconcile = %+v, want nothing pushed and both accounts checked", rep)
	}
}

func ptr[T any](v T) *T { return &v }

// TestKeyIssuedOnce: a key is issued once, revoked keys never again, and a
// key revoked without ever being issued here is recorded so that it cannot
// be issued later.
func TestKeyIssuedOnce(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	for _, n := range []string{"acme", "other"} {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	key := func() string {
		kp, _ := nkeys.CreateUser()
		p, _ := kp.PublicKey()
		return p
	}
	issued, foreign := key(), key()
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "alice", PublicKey: issued}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: foreign}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, account, user, key string
	}{
		{"same key, other name", "acme", "bob", issued},
		{"same key, same name", "acme", "alice", issued},
		{"same key, other account", "other", "alice", issued},
		{"revoked foreign key", "acme", "carol", foreign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: tt.account, Name: tt.user, PublicKey: tt.key})
			if !errors.Is(err, provision.ErrConflict) {
				t.Fatalf("CreateUser = %v, want ErrConflict", err)
			}
		})
	}
	users, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 1 || users.Users[0].Name != "alice" || users.Users[0].PublicKey != issued {
		t.Errorf("user.list = %+v, want alice's record unchanged and nothing else", users.Users)
	}
	_ = fmt.Sprint
}

// TestReconcileOutlastsTheRequest: a requested pass that takes longer than
// the request may wait goes on; the reply says it is running and when it
// started, and prov.status reports the whole pass once it ended. A
// request that comes while it runs gets a pass of its own, after it.
func TestReconcileOutlastsTheRequest(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// Five LOOKUPs a second: a pass over 30 accounts takes six seconds,
	// longer than two requests of two seconds each (the service answers
	// one at 90% of its time: 200 ms of margin on a loaded machine).
	d := newDomain(t, env, nil, func(c *provision.Config) { c.ReconcileRate = 5 })
	defer d.stop()
	ctx := context.Background()
	const n = 30
	for i := range n {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("slow-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	request := func() *api.ReconcileReply {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		start := time.Now()
		rep, err := d.svc.Reconcile(rctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= 2*time.Second {
			t.Fatalf("the reply took %v, past the request's deadline", took)
		}
		return rep
	}
	first := request()
	if !first.Running || first.Started == "" || first.Checked != 0 {
		t.Fatalf("first reply %+v; want running, with the time it started", first)
	}
	if second := request(); !second.Running || second.Started != "" {
		t.Fatalf("second reply %+v; want running, not started (after the first)", second)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := d.svc.Status(ctx, api.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if last := st.LastReconcile; last != nil && last.Started == first.Started {
			if last.Checked != n || last.Failed != 0 || last.Running {
				t.Fatalf("the pass the first request started ended with %+v; want all %d accounts checked", last, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pass did not end: %+v", st.LastReconcile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUnknownConnectionTypeRefused: an allowed_connection_types value that
// nats-server does not know is a 400 naming it, for a user and for a role,
// and changes nothing; the server would ignore it, and a user whose every
// type it ignores can never connect. Known types are taken in any case.
func TestUnknownConnectionTypeRefused(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give []string
		want error
	}{
		{"unknown", []string{"FOO"}, provision.ErrInvalid},
		{"one unknown among known", []string{"STANDARD", "websockets"}, provision.ErrInvalid},
		{"known, lower case", []string{"standard"}, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("u%d", i)
			rep, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: name, AllowedConnectionTypes: tt.give})
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateUser(%v) = %v, want %v", tt.give, err, tt.want)
			}
			_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{name: {AllowedConnectionTypes: tt.give}}})
			if !errors.Is(err, tt.want) {
				t.Fatalf("a role with %v: %v, want %v", tt.give, err, tt.want)
			}
			if tt.want != nil {
				return
			}
			uc, err := jwt.DecodeUserClaims(rep.User.JWT)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(uc.AllowedConnectionTypes, jwt.StringList{jwt.ConnectionTypeStandard}) {
				t.Errorf("allowed_connection_types = %v, want [STANDARD] as the server reads it", uc.AllowedConnectionTypes)
			}
			if !connects(env, writeCreds(t, rep.User)) {
				t.Error("a STANDARD user cannot connect")
			}
		})
	}
	users, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 1 {
		t.Errorf("user.list = %+v, want only the user of known types", users.Users)
	}
	got, err := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Account.Roles) != 1 {
		t.Errorf("roles = %v, want only the role of known types", got.Account.Roles)
	}
}

package provision_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// issue creates a user and returns its creds file and JWT claims.
func issue(t *testing.T, d *domain, req api.CreateUserRequest) (string, *jwt.UserClaims) {
	t.Helper()
	rep, err := d.svc.CreateUser(context.Background(), req)
	if err != nil {
		t.Fatalf("CreateUser %s: %v", req.Name, err)
	}
	uc, err := jwt.DecodeUserClaims(rep.User.JWT)
	if err != nil {
		t.Fatal(err)
	}
	return writeCreds(t, rep.User), uc
}

// dial connects with creds and keeps the connection open for the test.
func dial(t *testing.T, env *provtest.Env, creds string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(env.Server.URL(), nats.UserCredentials(creds), nats.NoReconnect())
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func waitClosed(t *testing.T, nc *nats.Conn, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !nc.IsClosed() {
		t.Errorf("%s stays connected", what)
	}
}

// TestAccountKeyRotation: after a rotation new users are signed by the new
// keys (a role keeps its template) and the old users keep working; once
// the old keys are revoked, the users they signed are cut off and cannot
// connect, and the new ones still can.
func TestAccountKeyRotation(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{
		"device": {Pub: &jwt.Permission{Allow: jwt.StringList{"telemetry.>"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	u1, uc1 := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "u1"})
	d1, dc1 := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
	live := dial(t, env, u1)

	rot, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.SigningKeys) != 2 || len(rot.Retired) != 2 || len(rot.Removed) != 0 {
		t.Fatalf("rotate = keys %v retired %v removed %v, want 2 new, 2 retired", rot.SigningKeys, rot.Retired, rot.Removed)
	}
	u2, uc2 := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "u2"})
	d2, dc2 := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "d2", Role: "device"})
	if uc2.Issuer == uc1.Issuer || dc2.Issuer == dc1.Issuer {
		t.Fatal("users issued after the rotation are signed by the old keys")
	}
	ac, _ := jwt.DecodeAccountClaims(rot.Account.JWT)
	if scope, ok := ac.SigningKeys.GetScope(dc2.Issuer); !ok || scope.(*jwt.UserScope).Template.Pub.Allow[0] != "telemetry.>" {
		t.Fatalf("the rotated role key lost its template: %v", scope)
	}
	for _, c := range []string{u1, d1, u2, d2} {
		if !connects(env, c) {
			t.Errorf("%s cannot connect after a rotation without revoke_old", filepath.Base(c))
		}
	}
	if !live.IsConnected() {
		t.Error("a connection of an old key's user was closed by the rotation")
	}

	f := false
	rot, err = d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme", RevokeOld: true, Rotate: &f})
	if err != nil {
		t.Fatal(err)
	}
	if len(rot.Removed) != 2 || len(rot.Retired) != 0 {
		t.Fatalf("revoke_old = removed %v retired %v, want the 2 old keys removed", rot.Removed, rot.Retired)
	}
	waitClosed(t, live, "a user of a removed key")
	for _, c := range []string{u1, d1} {
		if connects(env, c) {
			t.Errorf("%s, signed by a removed key, connects", filepath.Base(c))
		}
	}
	for _, c := range []string{u2, d2} {
		if !connects(env, c) {
			t.Errorf("%s, signed by a new key, cannot connect", filepath.Base(c))
		}
	}
}

// TestExportsAndImports: a service export used across two accounts, a
// private export whose import works with the activation token the service
// signs and is refused without it, and an import of a subject nobody
// exports refused before anything is pushed.
func TestExportsAndImports(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "time", Subject: "time.now", Type: jwt.Service},
		{Name: "secret", Subject: "secret.get", Type: jwt.Service, TokenReq: true},
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "nothing", Subject: "nobody.exports.this", Account: "alpha", Type: jwt.Service},
	}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "nobody.exports.this") {
		t.Fatalf("an import nobody exports: %v, want ErrInvalid naming the subject", err)
	}
	beta, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "time", Subject: "time.now", Account: "alpha", Type: jwt.Service},
		{Name: "secret", Subject: "secret.get", Account: "alpha", Type: jwt.Service},
	}})
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := jwt.DecodeAccountClaims(beta.Account.JWT)
	for _, im := range bc.Imports {
		if im.Subject == "secret.get" && im.Token == "" {
			t.Fatal("the private import got no activation token")
		}
	}

	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "server"})
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "client"})
	srv := dial(t, env, alphaCreds)
	for _, subj := range []string{"time.now", "secret.get"} {
		if _, err := srv.Subscribe(subj, func(m *nats.Msg) { m.Respond([]byte("from alpha: " + m.Subject)) }); err != nil {
			t.Fatal(err)
		}
	}
	srv.Flush()
	cli := dial(t, env, betaCreds)
	for _, subj := range []string{"time.now", "secret.get"} {
		m, err := cli.Request(subj, nil, 2*time.Second)
		if err != nil || string(m.Data) != "from alpha: "+subj {
			t.Fatalf("beta requests %s across the import: %v", subj, err)
		}
	}

	// The same import without its token, pushed behind the service's
	// back: the server refuses the private service, not the public one.
	for _, im := range bc.Imports {
		im.Token = ""
	}
	bare, err := bc.Encode(d.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(ctx, bare); err != nil {
		t.Fatal(err)
	}
	cli2 := dial(t, env, betaCreds)
	if _, err := cli2.Request("secret.get", nil, time.Second); err == nil {
		t.Error("the private export answers an import without an activation token")
	}
	if _, err := cli2.Request("time.now", nil, 2*time.Second); err != nil {
		t.Errorf("the public export fails without a token: %v", err)
	}
}

// TestTiersAndExpiry: tiered JetStream limits are enforced by the server
// (an R1 stream within the tier is made, one past it refused), a request
// with both flat and tiered limits is refused, and an expired account is
// refused by the server and not pushed again.
func TestTiersAndExpiry(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	one := int64(1)
	mib := int64(1 << 20)
	zero := int64(0)
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "both", Limits: &api.AccountLimits{
		JetStreamLimits: api.JetStreamLimits{DiskStorage: &mib},
		TieredLimits:    map[string]api.JetStreamLimits{"R1": {DiskStorage: &mib}},
	}})
	if !errors.Is(err, provision.ErrInvalid) || !strings.Contains(err.Error(), "tiered_limits") {
		t.Fatalf("flat and tiered limits together: %v, want ErrInvalid", err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "tiered", Limits: &api.AccountLimits{
		TieredLimits: map[string]api.JetStreamLimits{"R1": {DiskStorage: &mib, MemStorage: &zero, Streams: &one, Consumer: &one}},
	}}); err != nil {
		t.Fatal(err)
	}
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "tiered", Name: "app"})
	js, err := jetstream.New(dial(t, env, creds))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ok", Subjects: []string{"ok.>"}, Replicas: 1, MaxBytes: 512 << 10}); err != nil {
		t.Fatalf("an R1 stream within the tier: %v", err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "more", Subjects: []string{"more.>"}, Replicas: 1, MaxBytes: 256 << 10}); err == nil {
		t.Error("a second stream past the tier's one stream was made")
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "big", Subjects: []string{"big.>"}, Replicas: 1, MaxBytes: 4 << 20}); err == nil {
		t.Error("a stream larger than the tier's storage was made")
	}

	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "brief", ExpiresIn: "2s"}); err != nil {
		t.Fatal(err)
	}
	brief, _ := issue(t, d, api.CreateUserRequest{Account: "brief", Name: "u"})
	if !connects(env, brief) {
		t.Fatal("a user of an unexpired account cannot connect")
	}
	time.Sleep(3 * time.Second)
	if connects(env, brief) {
		t.Error("a user of an expired account connects")
	}
	rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expired != 1 || rep.Pushed != 0 {
		t.Errorf("reconcile = %+v, want the expired account skipped, nothing pushed", rep)
	}
}

// TestRevocationsShrink: the revocations of users whose JWTs have expired
// leave the account JWT (after the margin), at the next change or the
// next reconcile pass; a key revoked without being issued here stays.
func TestRevocationsShrink(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.RevocationMargin = time.Millisecond })
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var expires int64
	for _, n := range []string{"a", "b", "c"} {
		_, uc := issue(t, d, api.CreateUserRequest{Account: "acme", Name: n, ExpiresIn: "2s"})
		keys = append(keys, uc.Subject)
		expires = max(expires, uc.Expires)
	}
	_, forever := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "forever"})
	foreign, _ := nkeys.CreateUser()
	foreignPub, _ := foreign.PublicKey()
	// Concurrent: they join one version, before any JWT expires.
	var wg sync.WaitGroup
	for _, k := range append(keys, forever.Subject, foreignPub) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.svc.RevokeUser(ctx, api.RevokeUserRequest{Account: "acme", User: k}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	revocations := func() jwt.RevocationList {
		got, err := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		return got.Account.Claims.Revocations
	}
	if n := len(revocations()); n != 5 {
		t.Fatalf("%d revocations, want 5", n)
	}
	// A JWT is expired, to the pruning, once a whole second has passed
	// its exp (a Unix second, rounded up at issue): sleeping a fixed 3 s
	// from here left the pass in exp's second when the revokes finished
	// early in the second of the issues (CI, once).
	time.Sleep(time.Until(time.Unix(expires+1, 0).Add(50 * time.Millisecond)))
	rep, err := d.svc.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		t.Fatal(err)
	}
	left := revocations()
	if len(left) != 2 || left[forever.Subject] == 0 || left[foreignPub] == 0 || rep.Pushed != 1 {
		t.Errorf("after the JWTs expired: revocations %v (reconcile %+v), want only the unexpiring and the foreign key's", left, rep)
	}
	server := d.lookupAll(t, (func() string {
		a, _ := d.svc.GetAccount(ctx, api.AccountRequest{Account: "acme"})
		return a.Account.PublicKey
	})())
	sc, _ := jwt.DecodeAccountClaims(server[0])
	if len(sc.Revocations) != 2 {
		t.Errorf("the server's JWT has %d revocations, want 2", len(sc.Revocations))
	}
}

// TestCutOffUserIsNotActive: a user whose signing key the account JWT no
// longer holds (revoke_old removed it, or its role was removed) cannot
// connect, and is not active: its name can be issued again with a new
// key, without a revocation that would stay in the account JWT for good,
// and user.list shows it revoked.
func TestCutOffUserIsNotActive(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{
		"device": {Pub: &jwt.Permission{Allow: jwt.StringList{"telemetry.>"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	u1, _ := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "u1"})
	d1, _ := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "d1", Role: "device"})
	if _, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "acme", RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	if connects(env, u1) || connects(env, d1) {
		t.Fatal("a user of a removed key connects")
	}
	d2, _ := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "d2", Role: "device"})
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Roles: map[string]*api.Role{"device": nil}}); err != nil {
		t.Fatal(err)
	}
	if connects(env, d2) {
		t.Fatal("a user of a removed role connects")
	}
	for _, n := range []string{"u1", "d2"} {
		if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: n}); err != nil {
			t.Errorf("user.create %s, whose user of that name is cut off: %v", n, err)
		}
	}
	ls, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Users) != 5 {
		t.Fatalf("user.list has %d users, want 5: %+v", len(ls.Users), ls.Users)
	}
	for i, u := range ls.Users {
		if want := i < 3; u.Revoked != want {
			t.Errorf("user.list: %s (#%d) revoked=%v, want %v", u.Name, i, u.Revoked, want)
		}
	}
}

// TestSealedBearerRefused: an xkey asks for a reply whose secrets others
// reading it cannot use, and a bearer user's JWT, sent in the clear beside
// the sealed seed, connects without that seed: user.create refuses the
// pair (its own bearer_token, or a role whose template gives it), and
// records nothing.
func TestSealedBearerRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", Roles: map[string]*api.Role{
		"kiosk": {BearerToken: true},
	}}); err != nil {
		t.Fatal(err)
	}
	curve, _ := nkeys.CreateCurveKeys()
	xkey, _ := curve.PublicKey()
	for _, req := range []api.CreateUserRequest{
		{Account: "acme", Name: "b1", BearerToken: true, XKey: xkey},
		{Account: "acme", Name: "k1", Role: "kiosk", XKey: xkey},
	} {
		rep, err := d.svc.CreateUser(ctx, req)
		if !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("user.create %s, bearer with an xkey: %v (jwt in the clear: %v), want ErrInvalid", req.Name, err, rep != nil && rep.User.JWT != "")
		}
	}
	ls, err := d.svc.ListUsers(ctx, api.ListUsersRequest{Account: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Users) != 0 {
		t.Errorf("refused creates recorded users: %+v", ls.Users)
	}
}

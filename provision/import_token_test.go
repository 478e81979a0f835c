package provision_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestImportKeepsNoUntrustedActivation: an import given with its
// activation token (an account's imports sent back as account.get shows
// them, with one more) is checked as the server checks it. A token signed
// by a signing key its exporter no longer lists (removed by a rotation
// with revoke_old) makes the server leave the import out: it must be
// refused (400), not pushed and answered as done while nothing crosses.
func TestImportKeepsNoUntrustedActivation(t *testing.T) {
	t.Parallel()
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
	beta, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "secret", Subject: "secret.get", Account: "alpha", Type: jwt.Service},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "alpha", RevokeOld: true}); err != nil {
		t.Fatal(err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "server"})
	srv := dial(t, env, alphaCreds)
	for _, subj := range []string{"time.now", "secret.get"} {
		if _, err := srv.Subscribe(subj, func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
			t.Fatal(err)
		}
	}
	srv.Flush()
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "client"})

	// Beta's imports as it has them, its old token kept, and one more.
	bc, err := jwt.DecodeAccountClaims(beta.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	imports := append(bc.Imports, &jwt.Import{Name: "time", Subject: "time.now", Account: "alpha", Type: jwt.Service})
	_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports})
	if errors.Is(err, provision.ErrInvalid) {
		return
	}
	if err != nil {
		t.Fatalf("imports with a token of a removed key: %v, want ErrInvalid", err)
	}
	cli := dial(t, env, betaCreds)
	if _, err := cli.Request("secret.get", nil, time.Second); err != nil {
		t.Fatalf("an import whose activation is signed by a key its exporter no longer lists was accepted, and a request across it: %v; want ErrInvalid", err)
	}
}

// TestImportOfAForeignAccountWithAStaleActivation: an activation token of
// an account this service does not manage, given with the import, is
// checked as the server checks it: one expired, or not valid yet, makes
// the server leave the import out (for good: it judges the token when the
// importer's JWT arrives), so it is refused (400) before anything is
// pushed.
func TestImportOfAForeignAccountWithAStaleActivation(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	kp, pub, pubConn := foreignExporter(t, env, d, &jwt.Export{Subject: "feed.x", Type: jwt.Stream, TokenReq: true})
	gamma, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	gammaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "gamma", Name: "reader"})

	now := time.Now()
	for what, set := range map[string]func(*jwt.ActivationClaims){
		"expired":       func(a *jwt.ActivationClaims) { a.Expires = now.Add(-time.Minute).Unix() },
		"not valid yet": func(a *jwt.ActivationClaims) { a.NotBefore = now.Add(time.Hour).Unix() },
	} {
		act := jwt.NewActivationClaims(gamma.Account.PublicKey)
		act.ImportSubject, act.ImportType = "feed.x", jwt.Stream
		set(act)
		tok, err := act.Encode(kp)
		if err != nil {
			t.Fatal(err)
		}
		imports := jwt.Imports{{Name: "feed", Subject: "feed.x", Account: pub, Type: jwt.Stream, Token: tok}}
		_, err = d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "gamma", Imports: &imports})
		if errors.Is(err, provision.ErrInvalid) {
			continue
		}
		if err != nil {
			t.Fatalf("import with an activation %s: %v, want ErrInvalid", what, err)
		}
		cli := dial(t, env, gammaCreds)
		sub, _ := cli.SubscribeSync("feed.x")
		cli.Flush()
		pubConn.Publish("feed.x", []byte("x"))
		pubConn.Flush()
		_, rerr := sub.NextMsg(time.Second)
		cli.Close()
		t.Fatalf("import with an activation %s accepted; a message across it: %v; want ErrInvalid", what, rerr)
	}

	// A token valid now is taken, and the server lets the stream cross.
	act := jwt.NewActivationClaims(gamma.Account.PublicKey)
	act.ImportSubject, act.ImportType = "feed.x", jwt.Stream
	tok, err := act.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	imports := jwt.Imports{{Name: "feed", Subject: "feed.x", Account: pub, Type: jwt.Stream, Token: tok}}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "gamma", Imports: &imports}); err != nil {
		t.Fatal(err)
	}
	cli := dial(t, env, gammaCreds)
	sub, _ := cli.SubscribeSync("feed.x")
	cli.Flush()
	pubConn.Publish("feed.x", []byte("x"))
	pubConn.Flush()
	if _, err := sub.NextMsg(2 * time.Second); err != nil {
		t.Fatalf("a valid activation's import: %v", err)
	}
}

// foreignExporter pushes an account this service does not manage, named
// foreign, with exports and a signing key, and connects a user of it
// signed by that key (closed when the test ends). It returns the
// account's key pair, its public key and the connection.
func foreignExporter(t *testing.T, env *provtest.Env, d *domain, exports ...*jwt.Export) (nkeys.KeyPair, string, *nats.Conn) {
	t.Helper()
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	fc := jwt.NewAccountClaims(pub)
	fc.Name = "foreign"
	fc.Exports.Add(exports...)
	skp, _ := nkeys.CreateAccount()
	spub, _ := skp.PublicKey()
	fc.SigningKeys.Add(spub)
	token, err := fc.Encode(d.op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.rc.Update(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.IssuerAccount = pub
	ujwt, err := uc.Encode(skp)
	if err != nil {
		t.Fatal(err)
	}
	useed, _ := ukp.Seed()
	nc, err := nats.Connect(env.Server.URL(), nats.UserJWTAndSeed(ujwt, string(useed)), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return kp, pub, nc
}

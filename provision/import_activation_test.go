package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestImportRevokedOnAnotherInstanceSaysRevoked: beta's update on instance
// b, its import of alpha's private export given with the activation it
// has, was checked in b's copy of the store, which did not hold alpha's
// revocation of beta that instance a had stored. Checked again once
// stored, it is refused (400), but the error said alpha "no longer
// exports it to this account": its exports had not changed. It says the
// activation is revoked by the export, and when.
func TestImportRevokedOnAnotherInstanceSaysRevoked(t *testing.T) {
	t.Parallel()
	lagB := &lagUntilSeen{}
	a, b := lagInstances(t, nil, lagB)
	ctx := context.Background()
	exports := jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true},
		{Name: "audit", Subject: "alpha.audit.>", Type: jwt.Stream},
	}
	alpha, err := a.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: exports})
	if err != nil {
		t.Fatal(err)
	}
	beta, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: alphaEvents(alpha.Account.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := jwt.DecodeAccountClaims(beta.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	lagB.freeze(t)
	revoked := time.Now().Unix()
	withRevocation := jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true, Revocations: jwt.RevocationList{beta.Account.PublicKey: revoked}},
		{Name: "audit", Subject: "alpha.audit.>", Type: jwt.Stream},
	}
	if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: alpha.Account.PublicKey, Exports: &withRevocation}); err != nil {
		t.Fatal(err)
	}
	// Beta's imports as it has them, its token kept, and one more.
	imports := append(bc.Imports, &jwt.Import{Name: "audit", Subject: "alpha.audit.>", Account: alpha.Account.PublicKey, Type: jwt.Stream})
	_, err = b.UpdateAccount(ctx, api.UpdateAccountRequest{Account: beta.Account.PublicKey, Imports: &imports})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("beta's update on instance b, its activation revoked on instance a: %v; want a 400", err)
	}
	want := time.Unix(revoked, 0).UTC().Format(time.RFC3339)
	if msg := err.Error(); strings.Contains(msg, "no longer exports") || !strings.Contains(msg, "revoked") || !strings.Contains(msg, want) {
		t.Errorf("beta's update refused with %q, want it to say the activation was revoked by alpha's export at %s", msg, want)
	}
}

// TestCreateImportingRevokedOnAnotherInstanceSaysRevoked: a new account's
// import of a private export, its activation signed on instance b as b's
// copy of the store held the exporter, while instance a had stored the
// exporter's revocation of every activation issued up to a time still to
// come. Checked again once the create is stored, it is refused (400), but
// the error said the exporter "no longer exports it to this account",
// though its export was there, unchanged but for the revocation. It says
// the activation is revoked by the export, and up to when.
func TestCreateImportingRevokedOnAnotherInstanceSaysRevoked(t *testing.T) {
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
	lagB.freeze(t)
	revoked := time.Now().Add(time.Hour).Unix()
	exports := jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true, Revocations: jwt.RevocationList{jwt.All: revoked}},
	}
	if _, err := a.UpdateAccount(ctx, api.UpdateAccountRequest{Account: alpha.Account.PublicKey, Exports: &exports}); err != nil {
		t.Fatal(err)
	}
	beta, err := b.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: alphaEvents(alpha.Account.PublicKey)})
	if !errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("beta's create on instance b importing alpha, whose export instance a revoked: %+v, %v; want a 400", beta, err)
	}
	want := time.Unix(revoked, 0).UTC().Format(time.RFC3339)
	if msg := err.Error(); strings.Contains(msg, "no longer exports") || !strings.Contains(msg, "revoked") || !strings.Contains(msg, want) {
		t.Errorf("beta's create refused with %q, want it to say the activation is revoked by alpha's export up to %s", msg, want)
	}
}

// TestImportOfAnExportThatRevokesItsNewActivation: an import of a managed
// account's private export, given without a token, gets an activation
// signed now. When the export revokes this account's activations (or
// every account's, "*") up to a time still to come, that new activation
// is revoked as it is signed: the server left the import out and the
// create answered success, though nothing crossed it. It is refused
// (400) before anything is pushed, saying the exporter must lift the
// revocation.
func TestImportOfAnExportThatRevokesItsNewActivation(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	revoked := time.Now().Add(time.Hour).Unix()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream, TokenReq: true, Revocations: jwt.RevocationList{jwt.All: revoked}},
	}}); err != nil {
		t.Fatal(err)
	}
	_, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "events", Subject: "alpha.events.>", Account: "alpha", Type: jwt.Stream},
	}})
	if errors.Is(err, provision.ErrInvalid) {
		if msg := err.Error(); !strings.Contains(msg, "revoke") {
			t.Errorf("beta's create refused with %q, want it to say alpha's export revokes the activation", msg)
		}
		return
	}
	if err != nil {
		t.Fatalf("beta's create importing an export that revokes its activation: %v, want ErrInvalid", err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "source"})
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "sink"})
	sink := dial(t, env, betaCreds)
	sub, err := sink.SubscribeSync("alpha.events.>")
	if err != nil {
		t.Fatal(err)
	}
	sink.Flush()
	src := dial(t, env, alphaCreds)
	src.Publish("alpha.events.x", []byte("hi"))
	src.Flush()
	if _, err := sub.NextMsg(time.Second); err != nil {
		t.Fatalf("beta's create importing an export that revokes its new activation answered success, and nothing crosses the import (%v); want ErrInvalid", err)
	}
}

// TestImportOfAForeignAccountTokenPositionExportNeedsNoToken: the server
// checks no activation for an export with account_token_position, private
// or not: it serves each account the subjects holding its own key
// (checkAuth). An import of such an export of an account this service
// does not manage, given without a token, was refused (400, "is private:
// give its activation token") though the server serves it.
func TestImportOfAForeignAccountTokenPositionExportNeedsNoToken(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	_, pub, srv := foreignExporter(t, env, d, &jwt.Export{Subject: "req.*", Type: jwt.Service, TokenReq: true, AccountTokenPosition: 2})
	if _, err := srv.Subscribe("req.*", func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	srv.Flush()
	gamma, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	imports := jwt.Imports{{Name: "own", Subject: jwt.Subject("req." + gamma.Account.PublicKey), LocalSubject: "mine", Account: pub, Type: jwt.Service}}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "gamma", Imports: &imports}); err != nil {
		t.Fatalf("gamma's import of its own subject of a foreign account_token_position export, without a token: %v", err)
	}
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "gamma", Name: "client"})
	cli := dial(t, env, creds)
	if m, err := cli.Request("mine", nil, 2*time.Second); err != nil || string(m.Data) != "ok" {
		t.Fatalf("gamma's import: %v", err)
	}
}

// TestRevocationsOfAPublicExportAreRefused: the server checks an export's
// revocations against activations only, and an export without token_req
// (or with account_token_position) takes no activation: its revocations
// revoke nothing. An exporter's update revoking beta's import of its
// public export was answered success, named no cut import, and beta's
// import went on working. It is refused (400), as a revocation that names
// no account is.
func TestRevocationsOfAPublicExportAreRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream},
	}}); err != nil {
		t.Fatal(err)
	}
	beta, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "events", Subject: "alpha.events.>", Account: "alpha", Type: jwt.Stream},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for what, e := range map[string]*jwt.Export{
		"public":                 {Name: "events", Subject: "alpha.events.>", Type: jwt.Stream},
		"account_token_position": {Name: "events", Subject: "alpha.*.>", Type: jwt.Stream, TokenReq: true, AccountTokenPosition: 2},
	} {
		e.Revocations = jwt.RevocationList{beta.Account.PublicKey: time.Now().Unix()}
		exports := jwt.Exports{e}
		up, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "alpha", Exports: &exports})
		if err == nil {
			t.Errorf("revocations of a %s export, which revoke nothing: %v (cut_imports %v); want a 400", what, err, up.CutImports)
		} else if !errors.Is(err, provision.ErrInvalid) {
			t.Errorf("revocations of a %s export: %v; want a 400", what, err)
		}
	}
}

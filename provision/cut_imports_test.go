package provision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// cutList shows a reply's cut imports as "account-name subject" lines.
func cutList(cut []api.CutImport) []string {
	var out []string
	for _, c := range cut {
		out = append(out, c.AccountName+" "+c.Subject)
	}
	return out
}

// TestChangesNameTheImportsTheyCut: an update of an exporter's exports that
// leaves a managed account's import unserved (the export removed, made
// private under an import without a token) is made, as NATS lets an
// exporter, and its reply names the imports it cut, which the server drops
// from the importing accounts without a word; one that cuts nothing names
// nothing. The exporter's delete names the imports left.
func TestChangesNameTheImportsTheyCut(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	events := &jwt.Export{Name: "events", Subject: "alpha.events.>", Type: jwt.Stream}
	ping := &jwt.Export{Name: "ping", Subject: "alpha.ping", Type: jwt.Service}
	get := &jwt.Export{Name: "get", Subject: "alpha.get", Type: jwt.Service, TokenReq: true}
	alpha, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{events, ping, get}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "events", Subject: "alpha.events.>", LocalSubject: "from.alpha.>", Account: "alpha", Type: jwt.Stream},
		{Name: "ping", Subject: "alpha.ping", Account: "alpha", Type: jwt.Service},
		{Name: "get", Subject: "alpha.get", Account: "alpha", Type: jwt.Service},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "gamma", Imports: jwt.Imports{
		{Name: "ping", Subject: "alpha.ping", Account: "alpha", Type: jwt.Service},
	}}); err != nil {
		t.Fatal(err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "source"})
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "sink"})
	src, sink := dial(t, env, alphaCreds), dial(t, env, betaCreds)
	sub, err := sink.SubscribeSync("from.alpha.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
	// received tells whether beta gets what alpha publishes on events.
	received := func() bool {
		if err := src.Publish("alpha.events.1", []byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err := sub.NextMsg(time.Second)
		return err == nil
	}
	if !received() {
		t.Fatal("beta does not get alpha's events before any change")
	}
	update := func(exports jwt.Exports, description string) *api.AccountReply {
		t.Helper()
		req := api.UpdateAccountRequest{Account: "alpha"}
		if exports != nil {
			req.Exports = &exports
		} else {
			req.Description = &description
		}
		rep, err := d.svc.UpdateAccount(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// Nothing cut: another field, the same exports, one more export.
	if rep := update(nil, "no exports touched"); len(rep.CutImports) != 0 {
		t.Fatalf("a description's update names cut imports: %v", rep.CutImports)
	}
	more := &jwt.Export{Name: "more", Subject: "alpha.more", Type: jwt.Service}
	if rep := update(jwt.Exports{events, ping, get, more}, ""); len(rep.CutImports) != 0 || rep.CutImportsOmitted != 0 {
		t.Fatalf("an update adding an export names cut imports: %v (+%d)", rep.CutImports, rep.CutImportsOmitted)
	}
	// The events export removed: beta's import of it is cut, on the
	// server too.
	rep := update(jwt.Exports{ping, get}, "")
	if got, want := cutList(rep.CutImports), []string{"beta alpha.events.>"}; !slices.Equal(got, want) {
		t.Fatalf("removing the events export: cut imports %q, want %q", got, want)
	}
	if c := rep.CutImports[0]; c.Account == "" || c.Type != "stream" || c.Name != "events" {
		t.Fatalf("cut import %+v: want beta's key, type stream, name events", c)
	}
	if received() {
		t.Fatal("beta still gets alpha's events once the export is gone: the cut the reply names is not real")
	}
	// ping made private: neither importer holds a token.
	private := *ping
	private.TokenReq = true
	rep = update(jwt.Exports{&private, get}, "")
	if got, want := cutList(rep.CutImports), []string{"beta alpha.ping", "gamma alpha.ping"}; !slices.Equal(got, want) {
		t.Fatalf("making ping private: cut imports %q, want %q", got, want)
	}
	// The delete cuts what is left: beta's private import, whose token
	// the service signed.
	del, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: alpha.Account.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cutList(del.CutImports), []string{"beta alpha.get"}; !slices.Equal(got, want) {
		t.Fatalf("deleting alpha: cut imports %q, want %q", got, want)
	}
}

// TestCutImportsFitTheReply: an export many accounts import, removed, names
// as many of them as the reply has room for beside the servers' answers
// and counts the rest.
func TestCutImportsFitTheReply(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	feed := &jwt.Export{Name: "feed", Subject: "alpha.feed.>", Type: jwt.Stream}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{feed}}); err != nil {
		t.Fatal(err)
	}
	const importers = 40
	subject := "alpha.feed." + strings.Repeat("x", 60)
	for i := range importers {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("importer-%02d", i), Imports: jwt.Imports{
			{Name: "feed", Subject: jwt.Subject(subject), Account: "alpha", Type: jwt.Stream},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "alpha", Exports: &jwt.Exports{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.CutImports) == 0 || rep.CutImportsOmitted == 0 || len(rep.CutImports)+rep.CutImportsOmitted != importers {
		t.Fatalf("%d imports cut: the reply names %d and counts %d more; want some named, the rest counted", importers, len(rep.CutImports), rep.CutImportsOmitted)
	}
	servers, _ := json.Marshal(rep.Resolver)
	cut, _ := json.Marshal(rep.CutImports)
	if len(servers)+len(cut) > 3072+64 {
		t.Fatalf("the servers' answers (%d bytes) and the cut imports (%d bytes) take more than the reply's room beside the JWT", len(servers), len(cut))
	}
	if rep.CutImports[0].AccountName != "importer-00" {
		t.Fatalf("first cut import is %q's, want importer-00's (sorted by name)", rep.CutImports[0].AccountName)
	}
}

// TestRotationNamesTheImportsItCuts: a rotation with revoke_old removes the
// key the service signed a managed importer's activation with; the server
// then refuses the activation and drops the import. The reply names it.
func TestRotationNamesTheImportsItCuts(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{
		{Name: "get", Subject: "alpha.get", Type: jwt.Service, TokenReq: true},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{
		{Name: "get", Subject: "alpha.get", Account: "alpha", Type: jwt.Service},
	}}); err != nil {
		t.Fatal(err)
	}
	alphaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "responder"})
	betaCreds, _ := issue(t, d, api.CreateUserRequest{Account: "beta", Name: "caller"})
	resp, caller := dial(t, env, alphaCreds), dial(t, env, betaCreds)
	answer(t, resp, "alpha.get")
	if _, err := caller.Request("alpha.get", nil, 2*time.Second); err != nil {
		t.Fatalf("beta's import of alpha.get before the rotation: %v", err)
	}
	// Retiring the key cuts nothing: activations it signed still count.
	rep, err := d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.CutImports) != 0 {
		t.Fatalf("a rotation that removes no key names cut imports: %v", rep.CutImports)
	}
	rot := false
	rep, err = d.svc.RotateAccount(ctx, api.RotateAccountRequest{Account: "alpha", Rotate: &rot, RevokeOld: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cutList(rep.CutImports), []string{"beta alpha.get"}; !slices.Equal(got, want) {
		t.Fatalf("revoke_old: cut imports %q, want %q", got, want)
	}
	// alpha's responder, signed by the removed key too, is cut off: a
	// new one answers, inside alpha, and not through beta's import.
	alphaCreds, _ = issue(t, d, api.CreateUserRequest{Account: "alpha", Name: "responder-2"})
	resp = dial(t, env, alphaCreds)
	answer(t, resp, "alpha.get")
	if _, err := resp.Request("alpha.get", nil, 2*time.Second); err != nil {
		t.Fatalf("alpha's new responder does not answer inside alpha: %v", err)
	}
	if _, err := caller.Request("alpha.get", nil, time.Second); err == nil {
		t.Fatal("beta still reaches alpha.get once the key that signed its activation is removed: the cut the reply names is not real")
	}
	// What README says to do: give beta's imports again, and the service
	// signs a new activation.
	imports := jwt.Imports{{Name: "get", Subject: "alpha.get", Account: "alpha", Type: jwt.Service}}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "beta", Imports: &imports}); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Request("alpha.get", nil, 2*time.Second); err != nil {
		t.Fatalf("beta's import given again after the rotation: %v", err)
	}
}

// answer makes nc answer requests on subject, once the server has its
// subscription.
func answer(t *testing.T, nc *nats.Conn, subject string) {
	t.Helper()
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) { m.Respond([]byte("ok")) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

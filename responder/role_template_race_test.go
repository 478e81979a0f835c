package responder_test

import (
	"context"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// heldUserStore holds the first user record write named hold until
// release is closed, and says on held when it got there.
type heldUserStore struct {
	provision.Store
	hold          string
	held, release chan struct{}
}

func (s *heldUserStore) AddUser(ctx context.Context, u provision.User, durable bool) error {
	if u.Name == s.hold {
		close(s.held)
		<-s.release
	}
	return s.Store.AddUser(ctx, u, durable)
}

// TestRoleTemplateChangeWaitsForIssuesUnderWay: the check that refuses a
// role template putting a non-token user name into subjects reads the
// recorded users; a user "*" being issued under the old template, signed
// but not yet recorded, passed it, and came out under the new one with
// "telemetry.*.>". A template change now waits for the issues under way on
// its account (on this instance), then sees their users.
func TestRoleTemplateChangeWaitsForIssuesUnderWay(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	store := &heldUserStore{Store: svc.Store, hold: "*", held: make(chan struct{}), release: make(chan struct{})}
	p := domain(t, svc, provision.Config{Store: store})
	extra(t, env, p, responder.Config{Prefix: "prov.tplrace", Name: "tplrace"})
	if r := provtest.Request(t, admin, "prov.tplrace.account.create", `{"name":"acme","roles":{"device":{"pub":{"allow":["telemetry.>"]}}}}`); r.Code != 0 {
		t.Fatalf("account.create: %d %q", r.Code, r.Description)
	}
	issued := make(chan provtest.Reply, 1)
	go func() {
		issued <- provtest.Request(t, admin, "prov.tplrace.user.create", `{"account":"acme","name":"*","role":"device","public_key":"`+newUserPub(t)+`"}`)
	}()
	select {
	case <-store.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the user.create did not reach its record write")
	}
	updated := make(chan provtest.Reply, 1)
	go func() {
		updated <- provtest.Request(t, admin, "prov.tplrace.account.update", `{"account":"acme","roles":{"device":{"pub":{"allow":["telemetry.{{name()}}.>"]}}}}`)
	}()
	// The update, had it not waited, would be done well within this.
	select {
	case r := <-updated:
		close(store.release)
		<-issued
		t.Fatalf("the template change did not wait for the issue under way: %d %q", r.Code, r.Description)
	case <-time.After(2 * time.Second):
	}
	close(store.release)
	if r := <-issued; r.Code != 0 {
		t.Fatalf("user.create \"*\": %d %q", r.Code, r.Description)
	}
	if r := <-updated; r.Code != api.CodeInvalid {
		t.Errorf("the template change after \"*\" was issued: %d %q, want 400", r.Code, r.Description)
	}
}

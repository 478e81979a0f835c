package resolver_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestListReplyWithoutDataListsNothing: nats-server always answers LIST
// with "data" (an empty list included). A reply without it (a foreign
// responder in the system account, or a server of another version) says
// nothing of what that server holds, yet it was read as a server holding
// nothing: the reconciler, seeing every server list, could drop a
// tombstone for good while that server held the account.
func TestListReplyWithoutDataListsNothing(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	fake := env.Connect(t, provtest.SystemUserCreds(t, env.Init.Dir, env.Init.SystemAccount, "fake", nil))
	// It answers the pings too, so that the client knows it, waits for
	// it, and reads its LIST reply.
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		m.Respond([]byte(`{"name":"fake","host":"127.0.0.1","id":"NFAKE"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
		m.Respond([]byte(`{"server":{"name":"fake","id":"NFAKE"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, Logger: provtest.Logger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, 10*time.Second, "the client knows the fake server", func() bool {
		for _, srv := range c.Servers() {
			if srv.Name == "fake" && srv.Up {
				return true
			}
		}
		c.Discover(ctx)
		return false
	})
	list, err := c.List(ctx)
	if _, ok := list["fake"]; ok {
		t.Fatalf("a LIST reply without \"data\" counts as a server holding nothing: List = %v", list)
	}
	if !errors.Is(err, provision.ErrRefused) {
		t.Fatalf("List with a reply without \"data\": %v, want ErrRefused naming it", err)
	}
	if len(list) != 1 {
		t.Fatalf("List = %v, want the real server's list kept", list)
	}
}

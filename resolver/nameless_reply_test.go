package resolver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestNamelessReplyStandsForNoServer: an answer to a push that does not say
// which server sent it (no "server": a foreign responder in the system
// account) was counted as the answer of a server the push waited for: the
// push stopped waiting once it arrived, and a server up and answering
// within a moment was reported as silent (504 "no answer within"), its
// answer dropped. For a delete's disabled version or its DELETE, that
// server then counted as not having confirmed it.
func TestNamelessReplyStandsForNoServer(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	// A known server that answers a moment after the others.
	const name, id = "zz-slow", "NSLOWINSTANCE"
	slow := dupInstance(t, env, name, id)
	if _, err := slow.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		time.Sleep(300 * time.Millisecond)
		_ = m.Respond(jwtUpdated(name, id))
	}); err != nil {
		t.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		t.Fatal(err)
	}
	// A responder whose answers name no server.
	nameless := env.Connect(t, sysUserCreds(t, env.Init, "nameless", nil))
	if _, err := nameless.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"data":{"account":"","code":200,"message":"jwt updated"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nameless.Flush(); err != nil {
		t.Fatal(err)
	}

	c := inboxClient(t, env, "_INBOX_nameless-test", 3*time.Second)
	ctx := context.Background()
	waitFor(t, 5*time.Second, "the client knows the slow server", func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.Up
	})
	_, token := newAccount(t, "nameless", op.Signer)
	res, err := c.Update(ctx, token)
	if err != nil {
		t.Fatalf("Update: %v (%+v)", err, res)
	}
	for _, r := range res {
		if r.Server == name && !r.Stored {
			t.Fatalf("%s, up and answering in 300ms, reported %d %q: the nameless answer stood for it (%+v)", name, r.Code, r.Message, res)
		}
	}
}

// TestNamelessListReplyIsNoServers: a LIST answer that names no server (a
// foreign responder in the system account) was listed under the name "",
// as if a server of that name held its accounts: the reconciler took them
// for accounts on the servers. It stands for no server, as a push's does.
func TestNamelessListReplyIsNoServers(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// A known server that answers a moment after the others: the list
	// waits for it, and the nameless answer comes meanwhile.
	const name, id = "zz-slow", "NSLOWINSTANCE"
	slow := dupInstance(t, env, name, id)
	if _, err := slow.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
		time.Sleep(300 * time.Millisecond)
		_ = m.Respond(fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":[]}`, name, id))
	}); err != nil {
		t.Fatal(err)
	}
	if err := slow.Flush(); err != nil {
		t.Fatal(err)
	}
	nameless := env.Connect(t, sysUserCreds(t, env.Init, "nameless", nil))
	if _, err := nameless.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"data":["ABNAMELESSREPLYACCOUNTKEY"]}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := nameless.Flush(); err != nil {
		t.Fatal(err)
	}
	c := inboxClient(t, env, "_INBOX_nameless-test", 3*time.Second)
	waitFor(t, 5*time.Second, "the client knows the slow server", func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.Up
	})
	lists, err := c.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got, ok := lists[""]; ok {
		t.Errorf("a LIST answer naming no server is listed as a server's: %v", got)
	}
	if _, ok := lists[name]; len(lists) != 2 || !ok {
		t.Errorf("List: %v, want the deployment's server and %s", lists, name)
	}
}

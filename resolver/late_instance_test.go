package resolver_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestLateAnswerOfAGoneInstanceKeepsTheNewOnesResolver: zz, a full
// resolver, restarts while a push waits for it; its new instance answers
// the next push; then the old instance's answer to the first push arrives
// late. The new instance then misses one push (busy): it has answered a
// claims request, so it is a server with a resolver, slow this once. The
// late answer of the instance that is gone made the client note that
// instance as the one that answers claims requests: the new one counted as
// never having answered one, and the next ping took it for a server
// without a resolver (MEMORY or URL), which no push or delete waits for.
func TestLateAnswerOfAGoneInstanceKeepsTheNewOnesResolver(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	const name, oldID, newID = "zz-late", "NLATEOLDINSTANCE", "NLATENEWINSTANCE"
	var current atomic.Value
	current.Store(oldID)
	const (
		answer = iota
		hold
		silent
	)
	var mode atomic.Int32
	held := make(chan string, 1)
	fake := restartingServer(t, env, "late", name, &current)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		switch mode.Load() {
		case answer:
			_ = m.Respond(jwtUpdated(name, current.Load().(string)))
		case hold:
			held <- m.Reply
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}

	c := inboxClient(t, env, "_INBOX_late-test", time.Second)
	ctx := context.Background()
	push := func(what string) {
		t.Helper()
		_, token := newAccount(t, what, op.Signer)
		if _, err := c.Update(ctx, token); err != nil {
			t.Fatalf("push %s: %v", what, err)
		}
	}
	push("first-answer") // the old instance answers a claims request

	// A push the old instance takes in and answers late.
	mode.Store(hold)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, token := newAccount(t, "held", op.Signer)
		_, _ = c.Update(ctx, token)
	}()
	reply := <-held
	// zz restarts: its new instance announces itself.
	current.Store(newID)
	announce(t, fake, name, newID)
	<-done
	mode.Store(answer)
	push("new-instance") // the new instance answers a claims request
	// The old instance's answer, late.
	if err := fake.Publish(reply, jwtUpdated(name, oldID)); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)

	// The new instance misses one push; the ping after it is answered.
	mode.Store(silent)
	_, token := newAccount(t, "missed", op.Signer)
	_, _ = c.Update(ctx, token)
	time.Sleep(500 * time.Millisecond) // the refresh the missed answer set off
	if err := c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	s, ok := findServer(c.Servers(), name)
	if !ok || !s.Up || s.ID != newID {
		t.Fatalf("%s: %+v, want up as %s", name, s, newID)
	}
	if s.NoResolver {
		t.Errorf("%s (%s) taken for a server without a resolver after one missed push, though it answered a push; the late answer of its gone instance %s counted instead", name, newID, oldID)
	}
}

// restartingServer connects as system user user and answers server pings
// as server name, whose instance is the ID current holds: store a new one
// for the server to restart (and announce it).
func restartingServer(t *testing.T, env *provtest.Env, user, name string, current *atomic.Value) *nats.Conn {
	t.Helper()
	fake := env.Connect(t, sysUserCreds(t, env.Init, user, nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, current.Load().(string)))
	}); err != nil {
		t.Fatal(err)
	}
	return fake
}

// announce publishes on fake the STATSZ of server name's instance id, as a
// server that starts does.
func announce(t *testing.T, fake *nats.Conn, name, id string) {
	t.Helper()
	if err := fake.Publish(fmt.Sprintf("$SYS.SERVER.%s.STATSZ", id), fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"statsz":{}}`, name, id)); err != nil {
		t.Fatal(err)
	}
}

// jwtUpdated is server name's instance id's answer to a claims update
// that it stored.
func jwtUpdated(name, id string) []byte {
	return fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":{"account":"","code":200,"message":"jwt updated"}}`, name, id)
}

// inboxClient is a client of env, on a connection whose inbox prefix is
// prefix, whose requests wait timeout.
func inboxClient(t *testing.T, env *provtest.Env, prefix string, timeout time.Duration) *resolver.Client {
	t.Helper()
	return newClient(t, env.Connect(t, inboxUserCreds(t, env.Init, prefix), nats.CustomInboxPrefix(prefix)),
		resolver.Options{Timeout: timeout, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
}

package resolver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestLateRefusalSaysTheServerHasAResolver: a full resolver whose disk
// stalls misses a push's timeout, and the ping after it, which it
// answers, takes it for a server without a resolver (MEMORY or URL). Its
// late answer says it has one: a late "jwt updated" cleared that, but a
// late refusal (the disk back with an error: "jwt update resulted in error
// - ... input/output error") did not, and nothing waited for the server
// until it answered a claims request in time again.
func TestLateRefusalSaysTheServerHasAResolver(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	const name, id = "zz-stalled", "NSTALLEDDISK"
	fake := dupInstance(t, env, name, id)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		time.Sleep(2500 * time.Millisecond)
		_ = m.Respond([]byte(`{"server":{"name":"` + name + `","id":"` + id + `"},"error":{"account":"A","code":500,"description":"jwt update resulted in error - write: input/output error"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	c := inboxClient(t, env, "_INBOX_late-refusal-test", time.Second)
	waitFor(t, 5*time.Second, "the client knows "+name, func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.Up
	})
	_, token := newAccount(t, "stalled", op.Signer)
	_, _ = c.Update(context.Background(), token)
	waitFor(t, 3*time.Second, name+" taken for a server without a resolver after it missed the push", func() bool {
		s, _ := findServer(c.Servers(), name)
		return s.NoResolver
	})
	// Its late refusal comes 2.5s after the push.
	waitFor(t, 4*time.Second, name+"'s late refusal says it has a resolver", func() bool {
		s, _ := findServer(c.Servers(), name)
		return !s.NoResolver
	})
}

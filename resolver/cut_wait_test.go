package resolver_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestPushCutByItsCallerSuspectsNoServer: a push whose caller's context
// ends before the servers have answered (a request's short deadline, a
// stop) heard nothing of those servers' resolvers. A full resolver that
// had not answered a claims request yet (just started, slow to answer its
// first) was taken for one that answers none: the ping after the cut
// push, which it answers, marked it a server without a resolver (MEMORY or
// URL), which no push, DELETE or LIST waited for until its late answer
// came in (a delete could finish without it meanwhile).
func TestPushCutByItsCallerSuspectsNoServer(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	const name = "zz-first"
	c := slowResolverBeside(t, env, name, "NFIRSTANSWERSLOW", "_INBOX_cut-test")

	_, token := newAccount(t, "cut", op.Signer)
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, _ = c.Update(ctx, token)
	cancel()
	// The ping the cut push sets off is answered at once; the server's
	// own late answer to the push, which says it has a resolver, comes
	// 1.5s after the push.
	for time.Since(sent) < 1200*time.Millisecond {
		if s, _ := findServer(c.Servers(), name); s.NoResolver {
			t.Fatalf("%s taken for a server without a resolver after a push its caller cut at 100ms, before its first answer: %+v", name, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPushCutByItsCallerSaysHowLongItWaited: the line of a server that
// had not answered a push its caller cut after 100ms said "no answer
// within 3s", the client's timeout, which the push never waited: read in
// a change's reply or log, a server answering in a second looked dead.
func TestPushCutByItsCallerSaysHowLongItWaited(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	const name = "zz-cutline"
	c := slowResolverBeside(t, env, name, "NCUTLINESLOW", "_INBOX_cutline-test")

	_, token := newAccount(t, "cutline", op.Signer)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, _ := c.Update(ctx, token)
	i := slices.IndexFunc(res, func(r provision.ServerReply) bool { return r.Server == name })
	if i < 0 {
		t.Fatalf("no line for %s: %+v", name, res)
	}
	if r := res[i]; r.Code != 504 || strings.HasPrefix(r.Message, "no answer within 3s") || !strings.Contains(r.Message, "cut short") {
		t.Errorf("%s's line after a push cut at 100ms: %d %q, want 504 saying how long the push waited, not the 3s timeout", name, r.Code, r.Message)
	}
}

// slowResolverBeside runs, beside env's server, a fake server name (its
// instance id) whose resolver answers each push 1.5s after it came, and
// returns a client (timeout 3s, on inbox prefix) that knows it up.
func slowResolverBeside(t *testing.T, env *provtest.Env, name, id, prefix string) *resolver.Client {
	t.Helper()
	fake := dupInstance(t, env, name, id)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		time.Sleep(1500 * time.Millisecond)
		_ = m.Respond(jwtUpdated(name, id))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	c := inboxClient(t, env, prefix, 3*time.Second)
	waitFor(t, 5*time.Second, "the client knows "+name, func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.Up
	})
	return c
}

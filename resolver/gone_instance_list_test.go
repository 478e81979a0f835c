package resolver_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestGoneInstanceListIsNotTheServers: zz restarted (the client knows its
// new instance); the new instance answers LIST at once, its old one (not
// yet gone) a little later, while the LIST still waits for a slower
// server. The last reply under a name was kept: the old instance's list
// stood for what zz holds, and the reconciler could drop a tombstone of an
// account the new instance holds.
func TestGoneInstanceListIsNotTheServers(t *testing.T) {
	const held = "AHELDBYTHENEWINSTANCE"
	c, name := goneInstance(t, "gonelist", resolver.SubjectClaimsList, `"data":["`+held+`"]`, `"data":[]`)
	list, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := list[name]; ok && !slices.Contains(got, held) {
		t.Fatalf("List[%s] = %q, the old instance's list; want the current instance's, which holds %s", name, got, held)
	}
}

// TestGoneInstanceVarzIsNotTheServers: as above for VARZ, the operator
// keys a server trusts: the old instance's answer (its operator JWT
// without the next signing key) stood for the new instance's, which
// trusts it, and a rotation was refused, or an instance switched back.
func TestGoneInstanceVarzIsNotTheServers(t *testing.T) {
	const op, cur, next = "OPERATORIDENTITY", "OCURRENTSIGNINGKEY", "ONEXTSIGNINGKEY"
	trusting := func(keys string) string {
		return `"data":{"trusted_operators_claim":[{"sub":"` + op + `","nats":{"signing_keys":[` + keys + `]}}]}`
	}
	c, name := goneInstance(t, "gonevarz", resolver.SubjectServerVarz, trusting(`"`+cur+`","`+next+`"`), trusting(`"`+cur+`"`))
	trusted, err := c.Operators(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := trusted[name]; ok && !slices.Contains(got, next) {
		t.Fatalf("Operators[%s] = %q, the old instance's keys; want the current instance's, which trusts %s", name, got, next)
	}
}

// goneInstance runs a fake server zz-<tag> that the client has seen
// restart, and a slower one: on subject, zz's new instance answers at once
// with the reply fields newFields, its old one, not yet gone, 100 ms later
// with oldFields, while the request still waits for the slower server.
// It returns the client and zz's name.
func goneInstance(t *testing.T, tag, subject, newFields, oldFields string) (*resolver.Client, string) {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	name, oldID, newID := "zz-"+tag, "NOLD"+strings.ToUpper(tag), "NNEW"+strings.ToUpper(tag)
	fake := env.Connect(t, sysUserCreds(t, env.Init, tag, nil))
	respondAfter := func(m *nats.Msg, d time.Duration, data []byte) {
		reply := m.Reply
		time.AfterFunc(d, func() { _ = fake.Publish(reply, data) })
	}
	var current atomic.Value
	current.Store(oldID)
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, current.Load().(string)))
		_ = m.Respond([]byte(`{"name":"zz-slow","host":"127.0.0.1","id":"NSLOWSERVER"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(subject, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},%s}`, name, newID, newFields))
		respondAfter(m, 100*time.Millisecond, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},%s}`, name, oldID, oldFields))
		respondAfter(m, 400*time.Millisecond, fmt.Appendf(nil, `{"server":{"name":"zz-slow","id":"NSLOWSERVER"},%s}`, oldFields))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	ctx := context.Background()
	known := func(id string) func() bool {
		return func() bool {
			s, ok := findServer(c.Servers(), name)
			slow, ok2 := findServer(c.Servers(), "zz-slow")
			if !ok || !ok2 || !s.Up || !slow.Up || s.ID != id {
				c.Discover(ctx)
				return false
			}
			return true
		}
	}
	waitFor(t, 5*time.Second, "the client knows both servers", known(oldID))
	// zz restarts: the client learns its new instance.
	current.Store(newID)
	waitFor(t, 5*time.Second, "the client knows the new instance", known(newID))
	return c, name
}

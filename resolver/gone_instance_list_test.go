package resolver_test

import (
	"context"
	"fmt"
	"slices"
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
	env := provtest.Deployment(t, bootstrap.Options{})
	const name, oldID, newID = "zz-gonelist", "NGONELISTOLD", "NGONELISTNEW"
	const held = "AHELDBYTHENEWINSTANCE"
	fake := env.Connect(t, sysUserCreds(t, env.Init, "gonelist", nil))
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
	if _, err := fake.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":["%s"]}`, name, newID, held))
		respondAfter(m, 100*time.Millisecond, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":[]}`, name, oldID))
		respondAfter(m, 400*time.Millisecond, []byte(`{"server":{"name":"zz-slow","id":"NSLOWSERVER"},"data":[]}`))
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
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := list[name]; ok && !slices.Contains(got, held) {
		t.Fatalf("List[%s] = %q, the old instance's list; want the current instance's, which holds %s", name, got, held)
	}
}

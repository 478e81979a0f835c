package resolver_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestTwoServersWithOneNameListNothing: two servers run with one
// server_name (nats-server refuses it on routes and gateways, not on leaf
// connections). Their LIST replies cannot be told apart by name: the one
// that answered first was taken for what "the" server holds, and the
// reconciler dropped a tombstone of an account the other still held.
func TestTwoServersWithOneNameListNothing(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	const name, idA, idB = "zz-dup", "NDUPINSTANCEA", "NDUPINSTANCEB"
	const held = "AHELDBYINSTANCEBONLY"
	for _, f := range []struct {
		id    string
		delay time.Duration
		list  string
	}{{idA, 0, `[]`}, {idB, 300 * time.Millisecond, `["` + held + `"]`}} {
		fake := env.Connect(t, sysUserCreds(t, env.Init, "dup-"+f.id, nil))
		respond := func(m *nats.Msg, data []byte, delay time.Duration) {
			if delay == 0 {
				_ = m.Respond(data)
				return
			}
			reply := m.Reply
			time.AfterFunc(delay, func() { _ = fake.Publish(reply, data) })
		}
		if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
			respond(m, fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, f.id), f.delay/6)
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := fake.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
			respond(m, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":%s}`, name, f.id, f.list), f.delay)
		}); err != nil {
			t.Fatal(err)
		}
		if err := fake.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	ctx := context.Background()
	if err := c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	list, _ := c.List(ctx)
	if got, ok := list[name]; ok && !slices.Contains(got, held) {
		t.Fatalf("List[%s] = %q, one of two servers named so; want it left out (or naming %s, which the other holds)", name, got, held)
	}
}

package resolver_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
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

// TestSecondServerWithOneNameAnnouncedFirstIsShared: a second server
// given a known server's name that announces itself (its STATSZ event)
// before a ping hears both was taken for a restart of the first, whose
// ID was retired: its answers, to every ping too, were ignored, the name
// was never marked shared, and what the second confirmed stood for both.
func TestSecondServerWithOneNameAnnouncedFirstIsShared(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	const name = "zz-dup"
	start := func(id string) *nats.Conn { return dupInstance(t, env, name, id) }
	start("NDUPINSTANCEA")
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	ctx := context.Background()
	if err := c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	b := start("NDUPINSTANCEB")
	if err := b.Publish("$SYS.SERVER.NDUPINSTANCEB.STATSZ", fmt.Appendf(nil, `{"server":{"name":%q,"id":"NDUPINSTANCEB"}}`, name)); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := c.Discover(ctx); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(c.Servers(), func(s provision.Server) bool { return s.Name == name })
		if i >= 0 && c.Servers()[i].ID == "NDUPINSTANCEB" {
			if !c.Servers()[i].Shared {
				t.Fatalf("%s answered by two instances, the second announced first: %+v; want it Shared", name, c.Servers()[i])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client never took in the second instance's event: %+v", c.Servers())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dupInstance runs a fake server instance id that answers the server ping
// as name.
func dupInstance(t *testing.T, env *provtest.Env, name, id string) *nats.Conn {
	t.Helper()
	fake := env.Connect(t, sysUserCreds(t, env.Init, "dup-"+id, nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, id))
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	return fake
}

// TestSharedNameClearsOnceOneInstanceIsLeft: a name two instances answered
// under stays shared while both answer, and is cleared once one alone has
// answered for sharedPings refreshes. Kept for server_forget_after (a day by
// default), it held every delete (it waits while a name is shared) that
// long after the duplicate was renamed or gone, or after a leaf's old and
// new instance overlapped once.
func TestSharedNameClearsOnceOneInstanceIsLeft(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	const name = "zz-dupgone"
	a := dupInstance(t, env, name, "NDUPGONEA")
	dupInstance(t, env, name, "NDUPGONEB")
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, RefreshInterval: 100 * time.Millisecond, Logger: provtest.Logger(t)})
	shared := func() bool {
		i := slices.IndexFunc(c.Servers(), func(s provision.Server) bool { return s.Name == name })
		return i >= 0 && c.Servers()[i].Shared
	}
	waitFor(t, 5*time.Second, "the name is marked shared", shared)
	// Both still answer: it stays shared over more than sharedPings refreshes.
	time.Sleep(1500 * time.Millisecond)
	if !shared() {
		t.Fatal("a name two instances still answer under was cleared")
	}
	a.Close()
	waitFor(t, 5*time.Second, "the name is cleared once one instance is left", func() bool { return !shared() })
}

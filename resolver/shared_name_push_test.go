package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestPushRefusedByTheOtherInstanceOfASharedNameIsRefused: two servers
// answer under one server_name, and the one the client does not take for
// the name's current instance refuses an UPDATE (its disk full) while the
// current one stores it. The refusal was dropped as the answer of an
// instance replaced by a restart, and the push (a revoke) reported success
// while that server kept the older version.
func TestPushRefusedByTheOtherInstanceOfASharedNameIsRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	const name, idA, idB = "zz-dup", "NDUPINSTANCEA", "NDUPINSTANCEB"
	onUpdate := func(fake *nats.Conn, id string, delay time.Duration, body string) {
		if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
			reply := m.Reply
			time.AfterFunc(delay, func() {
				_ = fake.Publish(reply, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},%s}`, name, id, body))
			})
		}); err != nil {
			t.Fatal(err)
		}
		if err := fake.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// A, known first, refuses at once.
	a := dupInstance(t, env, name, idA)
	onUpdate(a, idA, 0, `"error":{"code":500,"description":"jwt update resulted in error - disk full"}`)
	c := newClient(t, env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	ctx := context.Background()
	if err := c.Discover(ctx); err != nil {
		t.Fatal(err)
	}
	// B announces itself and becomes the name's current instance; it
	// stores, a little later.
	b := dupInstance(t, env, name, idB)
	onUpdate(b, idB, 300*time.Millisecond, `"data":{"code":200,"message":"jwt updated"}`)
	if err := b.Publish("$SYS.SERVER."+idB+".STATSZ", fmt.Appendf(nil, `{"server":{"name":%q,"id":%q}}`, name, idB)); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the name shared, B its current instance", func() bool {
		if err := c.Discover(ctx); err != nil {
			t.Fatal(err)
		}
		s, ok := findServer(c.Servers(), name)
		return ok && s.ID == idB && s.Shared
	})

	_, token := newAccount(t, "shared", op.Signer)
	res, err := c.Update(ctx, token)
	if !errors.Is(err, provision.ErrRefused) {
		t.Fatalf("Update = %+v, %v; want it refused: %s's instance %s refused it (two servers answer as %s)", res, err, name, idA, name)
	}
}

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

// TestGoneInstanceAnswerIsNotTheCurrentOnes: zz restarted (the client
// knows its new instance); its old instance, not yet gone (lame duck),
// answers a request at once, the new one a little later. The request
// counted the old instance's answer for zz and stopped waiting: a push
// reported zz as not answering (504), though its new instance stored the
// version, and a LIST read the old instance's list as what zz holds, for
// the reconciler to drop a tombstone the new one still needs.
func TestGoneInstanceAnswerIsNotTheCurrentOnes(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	const name, oldID, newID = "zz-gone", "NGONEOLDINSTANCE", "NGONENEWINSTANCE"
	const held = "AHELDBYTHENEWINSTANCEONLY"
	var current atomic.Value
	current.Store(oldID)
	fake := restartingServer(t, env, "gone", name, &current)
	// Each request is answered at once by the old instance, and 300ms
	// later by the new one.
	answer := func(m *nats.Msg, data func(id string) string) {
		_ = m.Respond(fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":%s}`, name, oldID, data(oldID)))
		reply := m.Reply
		time.AfterFunc(300*time.Millisecond, func() {
			_ = fake.Publish(reply, fmt.Appendf(nil, `{"server":{"name":%q,"id":%q},"data":%s}`, name, newID, data(newID)))
		})
	}
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		if current.Load().(string) == oldID {
			_ = m.Respond(jwtUpdated(name, oldID))
			return
		}
		answer(m, func(string) string { return `{"account":"","code":200,"message":"jwt updated"}` })
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Subscribe(resolver.SubjectClaimsList, func(m *nats.Msg) {
		answer(m, func(id string) string {
			if id == newID {
				return `["` + held + `"]`
			}
			return `[]`
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}

	c := inboxClient(t, env, "_INBOX_gone-test", 2*time.Second)
	ctx := context.Background()
	_, token := newAccount(t, "first", op.Signer)
	if _, err := c.Update(ctx, token); err != nil { // the old instance answers a claims request
		t.Fatal(err)
	}
	// zz restarts: its new instance announces itself.
	current.Store(newID)
	announce(t, fake, name, newID)
	waitFor(t, 5*time.Second, "the client knows the new instance", func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.Up && s.ID == newID
	})

	t.Run("push", func(t *testing.T) {
		_, token := newAccount(t, "second", op.Signer)
		res, err := c.Update(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Server == name && (r.ServerID != newID || !r.Stored) {
				t.Errorf("%s's line %+v, want its new instance %s's answer, stored", name, r, newID)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := list[name]; ok && !slices.Contains(got, held) {
			t.Errorf("List[%s] = %q, the old instance's list; want the new instance's, which holds %s (or none)", name, got, held)
		}
	})
}

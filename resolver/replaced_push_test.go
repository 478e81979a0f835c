package resolver_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestPushAnswerOfAReplacedInstanceConfirmsNothing: zz takes in a push,
// restarts (its new instance known to the client, announced on Joined,
// where the service forgets all zz confirmed), and only then does its old
// instance's answer arrive, while the push still waits for yy. The result
// listed zz as having stored the push, by the old instance's ID, and no
// line for the new instance, which never got it: the service, recording
// confirmations by name, took zz's new instance (possibly from an old
// disk) for one holding the version.
func TestPushAnswerOfAReplacedInstanceConfirmsNothing(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	const zz, oldID, newID = "zz-replaced", "NREPLACEDOLDINSTANCE", "NREPLACEDNEWINSTANCE"
	const yy, yyID = "yy-slow", "NSLOWINSTANCE"
	var current atomic.Value
	current.Store(oldID)
	fake := env.Connect(t, sysUserCreds(t, env.Init, "replaced", nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, zz, current.Load().(string)))
		_ = fake.Publish(m.Reply, fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, yy, yyID))
	}); err != nil {
		t.Fatal(err)
	}
	held := make(chan string, 1)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) { held <- m.Reply }); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}

	const prefix = "_INBOX_replaced-test"
	const timeout = 4 * time.Second
	c := inboxClient(t, env, prefix, timeout)
	if s, ok := findServer(c.Servers(), zz); !ok || s.ID != oldID || !s.Up {
		t.Fatalf("Servers() = %+v, want %s (%s) up", c.Servers(), zz, oldID)
	}

	type outcome struct {
		res provision.PushResult
		err error
	}
	done := make(chan outcome, 1)
	_, token := newAccount(t, "replaced", op.Signer)
	go func() {
		res, err := c.Update(context.Background(), token)
		done <- outcome{res, err}
	}()
	var reply string
	select {
	case reply = <-held:
	case <-time.After(timeout):
		t.Fatal("the push did not reach the fake servers")
	}
	// zz restarts; its new instance never saw the push.
	current.Store(newID)
	announce(t, fake, zz, newID)
	waitFor(t, time.Second, "the new instance known", func() bool {
		s, ok := findServer(c.Servers(), zz)
		return ok && s.ID == newID && s.Up
	})
	// The old instance's answer comes in late, then yy's.
	if err := fake.Publish(reply, jwtUpdated(zz, oldID)); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := fake.Publish(reply, jwtUpdated(yy, yyID)); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(2 * timeout):
		t.Fatal("the push did not end")
	}
	var current504 bool
	for _, r := range o.res {
		if r.Server != zz {
			continue
		}
		if r.Stored {
			t.Errorf("%s reported as having stored the push (%+v), by its instance %s replaced by %s, which never got it", zz, r, r.ServerID, newID)
		}
		if r.ServerID == newID && !r.Answered && r.Code == 504 {
			current504 = true
		}
	}
	if !current504 {
		t.Errorf("result %+v (%v): no 504 line for %s's current instance %s", o.res, o.err, zz, newID)
	}
}

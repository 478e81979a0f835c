package resolver_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestRestartWithoutShutdownReleasesWait: a server dies without a SHUTDOWN
// event (kill -9, OOM) while a push waits for it, and comes back under the
// same name with a new ID. The client learns the new instance (its STATSZ
// retires the old ID), but the push keeps waiting for the name until the
// timeout: the new instance never got the request and will never answer it.
func TestRestartWithoutShutdownReleasesWait(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)

	const name, oldID, newID = "zz-crash", "NCRASHOLDINSTANCE", "NCRASHNEWINSTANCE"
	var current atomic.Value
	current.Store(oldID)
	fake := env.Connect(t, sysUserCreds(t, env.Init, "crash", nil))
	if _, err := fake.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, name, current.Load().(string)))
	}); err != nil {
		t.Fatal(err)
	}
	pushes := make(chan struct{}, 16)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(*nats.Msg) { pushes <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}

	const prefix = "_INBOX_crash-test"
	const timeout = 4 * time.Second
	c := newClient(t, env.Connect(t, inboxUserCreds(t, env.Init, prefix), nats.CustomInboxPrefix(prefix)),
		resolver.Options{Timeout: timeout, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 2 || s[1].Name != name || s[1].ID != oldID || !s[1].Up {
		t.Fatalf("Servers() = %+v, want the real server and %s (%s) up", s, name, oldID)
	}

	type outcome struct {
		res provision.PushResult
		err error
	}
	done := make(chan outcome, 1)
	_, token := newAccount(t, "during-crash", op.Signer)
	go func() {
		res, err := c.Update(context.Background(), token)
		done <- outcome{res, err}
	}()
	select {
	case <-pushes:
	case <-time.After(timeout):
		t.Fatal("the push did not reach the fake server")
	}
	// The old instance dies without a word; the new one starts and
	// announces itself. It never saw the push.
	current.Store(newID)
	restarted := time.Now()
	ev := fmt.Sprintf(`{"server":{"name":%q,"id":%q},"statsz":{}}`, name, newID)
	if err := fake.Publish(fmt.Sprintf("$SYS.SERVER.%s.STATSZ", newID), []byte(ev)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "the new instance known", func() bool {
		s, ok := findServer(c.Servers(), name)
		return ok && s.ID == newID && s.Up
	})
	o := <-done
	if ended := time.Since(restarted); ended > timeout/4 {
		t.Errorf("the push ended %s after the client learned that %s was replaced (timeout %s); it kept waiting for an instance that is gone", ended.Round(time.Millisecond), name, timeout)
	}
	if len(o.res) != 2 || o.res[1].Server != name || o.res[1].Answered || o.res[1].Stored {
		t.Errorf("result %+v (%v), want %s not answered", o.res, o.err, name)
	}
	if strings.Contains(o.res[1].Message, "no answer within") {
		t.Logf("reply for %s: %q", name, o.res[1].Message)
	}
}

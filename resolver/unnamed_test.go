package resolver_test

import (
	"context"
	"os"
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

// TestUnnamedServerShutDownIsForgotten: a server without server_name is
// named by its server ID, new at each start, so an instance of it that
// shut down never answers under its name again: its disk comes back as a
// new server. It stayed known, down, for ForgetAfter (a day by default),
// and everything that waits for every known server (a delete's DELETE, a
// tombstone's drop, an operator rotation) waited that long after each
// restart of such a server. It is forgotten once it has shut down.
func TestUnnamedServerShutDownIsForgotten(t *testing.T) {
	t.Parallel()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, res, 2)
	a, b := nodes[0], nodes[1]
	// node-b without server_name.
	b.srv.Stop()
	conf, err := os.ReadFile(b.conf)
	if err != nil {
		t.Fatal(err)
	}
	unnamed := strings.Replace(string(conf), `server_name: "node-b"`, "", 1)
	if unnamed == string(conf) {
		t.Fatalf("no server_name line in %s:\n%s", b.conf, conf)
	}
	if err := os.WriteFile(b.conf, []byte(unnamed), 0o600); err != nil {
		t.Fatal(err)
	}
	b.restart(t)
	id := b.srv.ID()
	if b.srv.Name() != id {
		t.Fatalf("node-b without server_name is named %q, want its ID %s", b.srv.Name(), id)
	}

	const prefix = bootstrap.ProvisionerInboxPrefix
	nc, err := nats.Connect(a.srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := newClient(t, nc, resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	waitFor(t, 10*time.Second, "the client knows the unnamed server", func() bool {
		s, ok := findServer(c.Servers(), id)
		if !ok {
			_ = c.Discover(context.Background())
		}
		return ok && s.Up
	})

	b.srv.Stop()
	waitFor(t, 5*time.Second, "the unnamed server forgotten once it shut down", func() bool {
		_, ok := findServer(c.Servers(), id)
		return !ok
	})
	if _, ok := findServer(c.Servers(), a.name); !ok {
		t.Fatalf("%s, named, forgotten too: %+v", a.name, c.Servers())
	}
}

// TestUnnamedServerShutDownDuringAPushIsDown: a server without
// server_name shuts down while a push waits for it, and is forgotten at
// once. Its line in the push's result kept it up as it was when the push
// was sent, and said "no answer within" the timeout, as for a server up
// and silent, which sets off a ping for it too.
func TestUnnamedServerShutDownDuringAPushIsDown(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	const id = "NUNNAMEDSHUTDOWNDURINGPUSH"
	fake := dupInstance(t, env, id, id)
	held := make(chan struct{}, 1)
	if _, err := fake.Subscribe(resolver.SubjectClaimsUpdate, func(*nats.Msg) { held <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	c := inboxClient(t, env, "_INBOX_unnamed-push-test", 3*time.Second)
	waitFor(t, 5*time.Second, "the client knows the unnamed server", func() bool {
		s, ok := findServer(c.Servers(), id)
		return ok && s.Up
	})
	_, token := newAccount(t, "unnamed-push", op.Signer)
	type outcome struct {
		res provision.PushResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.Update(context.Background(), token)
		done <- outcome{res, err}
	}()
	<-held
	if err := fake.Publish("$SYS.SERVER."+id+".SHUTDOWN", []byte(`{"server":{"name":"`+id+`","id":"`+id+`"}}`)); err != nil {
		t.Fatal(err)
	}
	o := <-done
	i := slices.IndexFunc(o.res, func(r provision.ServerReply) bool { return r.Server == id })
	if i < 0 {
		t.Fatalf("no line for %s: %+v (%v)", id, o.res, o.err)
	}
	if r := o.res[i]; r.Answered || strings.HasPrefix(r.Message, "no answer within") {
		t.Errorf("line of the unnamed server that shut down during the push: %d %q, want it down", r.Code, r.Message)
	}
}

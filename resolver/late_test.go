package resolver_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestLateServerBecomesKnown: node-b is on a slow route: it answers every
// request about 600 ms after node-a. The client may not follow the server
// events, so it learns of servers from its pings alone; a ping waits for
// the servers it knows and 150 ms more, and a reply that came after it was
// dropped unread. node-b stayed unknown for good, however often the client
// pinged: no push waited for it or listed it, no delete waited for its
// confirmation, no rotation asked it. A late answer now makes it known.
func TestLateServerBecomesKnown(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	sysJWT, err := os.ReadFile(filepath.Join(res.Dir, bootstrap.SystemAccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	sysToken, err := jwt.ParseDecoratedJWT(sysJWT)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, routes string) *natsembed.Server {
		conf := bootstrap.ServerConf{
			Listen:        "127.0.0.1:-1",
			ServerName:    name,
			OperatorJWT:   filepath.Join(res.Dir, bootstrap.OperatorJWTFile),
			SystemAccount: res.SystemAccount,
			SystemJWT:     sysToken,
			ResolverDir:   filepath.Join(t.TempDir(), "jwt"),
			AllowDelete:   true,
			Limit:         1000,
		}
		text := string(conf.Render()) + fmt.Sprintf("\ncluster {\n  name: \"test-cluster\"\n  listen: \"127.0.0.1:-1\"\n  routes: [%s]\n}\n", routes)
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a := start("node-a", "")
	b := start("node-b", fmt.Sprintf("%q", "nats-route://"+provtest.SlowLink(t, a.ClusterAddr().String(), 300*time.Millisecond)))
	waitFor(t, 10*time.Second, "node-a and node-b route to each other", func() bool { return a.NumRoutes() > 0 && b.NumRoutes() > 0 })

	const prefix = "_INBOX_late-test"
	nc, err := nats.Connect(a.URL(), nats.UserCredentials(pingOnlyCreds(t, res, prefix)), nats.CustomInboxPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 10*time.Second, "node-b answers a ping", func() bool {
		sub, err := nc.SubscribeSync(nc.NewInbox())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest(resolver.SubjectServerPing, sub.Subject, nil); err != nil {
			t.Fatal(err)
		}
		n := 0
		for ; ; n++ {
			if _, err := sub.NextMsg(time.Second); err != nil {
				return n == 2
			}
		}
	})

	c := newClient(t, nc, resolver.Options{Timeout: 2 * time.Second, RefreshInterval: 200 * time.Millisecond, Logger: provtest.Logger(t)})
	waitFor(t, 5*time.Second, "the client knows node-b", func() bool {
		_, ok := findServer(c.Servers(), "node-b")
		return ok
	})
	if s, _ := findServer(c.Servers(), "node-b"); !s.Up {
		t.Errorf("node-b is known but down: %+v", s)
	}
}

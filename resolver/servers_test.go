package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestHungServer: a server that answers pings but not pushes, as one whose
// resolver is stuck would, costs a push the timeout; once it is down, even a
// push already waiting for it ends. It answers its first push: a server
// that never answered one is taken for one without a resolver that answers
// claims requests (MEMORY or URL; TestMemoryResolverServer in provision),
// and not waited for.
func TestHungServer(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	ctx := context.Background()

	// hung plays the stuck server on the real bus: a system account user
	// that answers the ping with a server identity and swallows pushes.
	const hungName, hungID = "zz-hung", "NHUNGSERVERFORTEST"
	hung := env.Connect(t, sysUserCreds(t, env.Init, "hung", nil))
	if _, err := hung.Subscribe(resolver.SubjectServerPing, func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"name":%q,"host":"127.0.0.1","id":%q}`, hungName, hungID))
	}); err != nil {
		t.Fatal(err)
	}
	pushes := make(chan struct{}, 16)
	var answered atomic.Bool
	if _, err := hung.Subscribe(resolver.SubjectClaimsUpdate, func(m *nats.Msg) {
		if answered.CompareAndSwap(false, true) {
			_ = m.Respond(fmt.Appendf(nil, `{"data":{"code":200,"message":"jwt updated"},"server":{"name":%q,"host":"127.0.0.1","id":%q}}`, hungName, hungID))
			return
		}
		pushes <- struct{}{}
	}); err != nil {
		t.Fatal(err)
	}
	if err := hung.Flush(); err != nil {
		t.Fatal(err)
	}

	const prefix = "_INBOX_hung-test"
	const timeout = 2 * time.Second
	c := newClient(t, env.Connect(t, inboxUserCreds(t, env.Init, prefix), nats.CustomInboxPrefix(prefix)), resolver.Options{Timeout: timeout, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	if s := c.Servers(); len(s) != 2 || s[1].Name != hungName || !s[1].Up {
		t.Fatalf("Servers() = %+v, want the real server and %s, up", s, hungName)
	}

	push := func(t *testing.T) (provision.PushResult, time.Duration) {
		t.Helper()
		_, token := newAccount(t, "team", op.Signer)
		start := time.Now()
		res, err := c.Update(ctx, token)
		if err != nil {
			t.Fatalf("Update: %v (result %+v)", err, res)
		}
		if len(res) != 2 || res.Stored() != 1 || !res[0].Stored || res[1].Server != hungName || res[1].Answered || res[1].Code != 504 {
			t.Fatalf("result %+v, want the real server stored and %s not answered (504)", res, hungName)
		}
		return res, time.Since(start)
	}

	if _, token := newAccount(t, "first", op.Signer); true {
		res, err := c.Update(ctx, token)
		if err != nil || len(res) != 2 || res.Stored() != 2 {
			t.Fatalf("the first push, which both answer: %+v, %v", res, err)
		}
	}

	t.Run("no answer within the timeout", func(t *testing.T) {
		res, took := push(t)
		if took < timeout {
			t.Errorf("Update took %s, less than the %s timeout it had to wait for %s", took, timeout, hungName)
		}
		if !strings.Contains(res[1].Message, "no answer within") {
			t.Errorf("message %q, want it to say there was no answer in time", res[1].Message)
		}
	})

	t.Run("shutdown while a push waits", func(t *testing.T) {
		for len(pushes) > 0 {
			<-pushes
		}
		type outcome struct {
			res  provision.PushResult
			took time.Duration
		}
		done := make(chan outcome, 1)
		go func() {
			// push's checks call t.Fatal, which must run in the test's
			// goroutine: the outcome is checked below.
			_, token := newAccount(t, "waiting", op.Signer)
			start := time.Now()
			res, _ := c.Update(ctx, token)
			done <- outcome{res, time.Since(start)}
		}()
		select {
		case <-pushes:
		case <-time.After(timeout):
			t.Fatal("the push did not reach the hung server")
		}
		shutdown := time.Now()
		if err := hung.Publish(fmt.Sprintf("$SYS.SERVER.%s.SHUTDOWN", hungID), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		o := <-done
		if ended := time.Since(shutdown); ended > timeout/2 {
			t.Errorf("the push ended %s after the SHUTDOWN event; it kept waiting for the server", ended)
		}
		if len(o.res) != 2 || o.res[1].Server != hungName || o.res[1].Answered || o.res[1].Code != 504 || !strings.Contains(o.res[1].Message, "down") {
			t.Errorf("result %+v, want %s not answered, 504, down", o.res, hungName)
		}
	})

	t.Run("later pushes do not wait", func(t *testing.T) {
		res, took := push(t)
		if took > timeout/2 {
			t.Errorf("Update took %s; it waited for the server that is down", took)
		}
		if !strings.Contains(res[1].Message, "down") {
			t.Errorf("message %q, want it to say the server is down", res[1].Message)
		}
	})
}

// TestJoinedKeepsNewest: more servers join than Joined holds while nobody
// reads; the oldest are dropped and logged, the newest kept in order. The
// servers are played on the real bus by STATSZ events from a system user.
func TestJoinedKeepsNewest(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	const prefix = "_INBOX_joined-test"
	var log provtest.SyncBuffer
	c := newClient(t, env.Connect(t, inboxUserCreds(t, env.Init, prefix), nats.CustomInboxPrefix(prefix)),
		resolver.Options{Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	fake := env.Connect(t, sysUserCreds(t, env.Init, "fake", nil))
	const joins, capacity = 70, 64
	for i := range joins {
		id := fmt.Sprintf("NFAKE%02d", i)
		ev := fmt.Sprintf(`{"server":{"name":"fake-%02d","id":%q},"statsz":{}}`, i, id)
		if err := fake.Publish(fmt.Sprintf("$SYS.SERVER.%s.STATSZ", id), []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fake.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "all fake servers known", func() bool { return len(c.Servers()) == joins+1 })
	var got []string
	for len(got) < capacity {
		select {
		case s := <-c.Joined():
			got = append(got, s.Name)
		case <-time.After(time.Second):
			t.Fatalf("Joined delivered %d servers, want %d: %v", len(got), capacity, got)
		}
	}
	select {
	case s := <-c.Joined():
		t.Errorf("Joined delivered more than it holds: %+v", s)
	default:
	}
	for i, name := range got {
		if want := fmt.Sprintf("fake-%02d", i+joins-capacity); name != want {
			t.Fatalf("Joined[%d] = %s, want %s (the newest, in order): %v", i, name, want, got)
		}
	}
	if n := strings.Count(log.String(), "dropped the oldest"); n != joins-capacity {
		t.Errorf("logged %d drops, want %d", n, joins-capacity)
	}
}

// TestConnectedServerRestarts: in a single-server deployment the server the
// client is connected to restarts. The client reconnects, learns the new
// instance from its events and delivers it on Joined, and pushes work again.
func TestConnectedServerRestarts(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	op := operator(t, env.Init.Dir)
	const prefix = "_INBOX_restart-test"
	c := newClient(t, env.Connect(t, inboxUserCreds(t, env.Init, prefix), nats.CustomInboxPrefix(prefix)),
		resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	oldID := env.Server.ID()
	start := time.Now()
	env.Restart(t)
	ready := time.Now()
	n := &node{name: env.Server.Name(), srv: env.Server}
	s := awaitJoined(t, c.Joined(), n, 10*time.Second)
	if s.ID == oldID || !s.Up {
		t.Fatalf("Joined %+v, want the new instance up", s)
	}
	t.Logf("Joined after the connected server restarted: %s after Restart was called, %s after it accepted clients", s.LastSeen.Sub(start), s.LastSeen.Sub(ready))
	if list := c.Servers(); len(list) != 1 || list[0].ID != env.Server.ID() || !list[0].Up {
		t.Errorf("Servers() = %+v, want the new instance only", list)
	}
	_, token := newAccount(t, "after-restart", op.Signer)
	res, err := c.Update(context.Background(), token)
	if err != nil || len(res) != 1 || res[0].ServerID != env.Server.ID() || !res[0].Stored {
		t.Fatalf("Update after the restart: %v, %+v; want stored by the new instance", err, res)
	}
}

// TestCacheResolverOnly: a server with a cache resolver answers a push with a
// 200 that stores nothing; with no full resolver anywhere the push is
// refused.
func TestCacheResolverOnly(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
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
	conf := fmt.Sprintf(`server_name: "cache"
listen: "127.0.0.1:-1"
operator: %q
system_account: %s
resolver: { type: cache, dir: %q, ttl: "1h", limit: 100 }
resolver_preload: { %s: %q }
`, filepath.Join(res.Dir, bootstrap.OperatorJWTFile), res.SystemAccount, filepath.Join(t.TempDir(), "jwt"), res.SystemAccount, sysToken)
	path := filepath.Join(t.TempDir(), "cache.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := newClient(t, nc, resolver.Options{Timeout: 2 * time.Second})

	_, token := newAccount(t, "cached", operator(t, res.Dir).Signer)
	result, err := c.Update(context.Background(), token)
	var re *provision.RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "cache") {
		t.Fatalf("Update: %v (result %+v), want a refusal saying only cache resolvers answered", err, result)
	}
	if len(result) != 1 || !result[0].Answered || result[0].Stored || result[0].Code != 200 {
		t.Errorf("result %+v, want one answered 200 that stored nothing", result)
	}
}

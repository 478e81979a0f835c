package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// node is one server of a test cluster, restartable from its configuration
// file with its resolver directory.
type node struct {
	name string
	conf string
	srv  *natsembed.Server
	// top is the test the cluster belongs to: a server started in a
	// subtest runs until it ends.
	top *testing.T
}

// restart starts the node again from its configuration: same name and
// resolver directory, a new server ID.
func (n *node) restart(t *testing.T) {
	t.Helper()
	srv, err := natsembed.Start(n.conf, natsembed.Options{Port: -1})
	if err != nil {
		t.Fatalf("restart %s: %v", n.name, err)
	}
	n.top.Cleanup(srv.Stop)
	n.srv = srv
}

// startCluster starts count routed servers of the deployment made by res
// (node-a, node-b, ...), each with its own resolver directory, and waits
// until every one routes to all others.
func startCluster(t *testing.T, res *bootstrap.Result, count int) []*node {
	t.Helper()
	sysJWT, err := os.ReadFile(filepath.Join(res.Dir, bootstrap.SystemAccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	sysToken, err := jwt.ParseDecoratedJWT(sysJWT)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*node
	for i := range count {
		name := fmt.Sprintf("node-%c", 'a'+i)
		routes := ""
		if i > 0 {
			routes = fmt.Sprintf("%q", "nats-route://"+nodes[0].srv.ClusterAddr().String())
		}
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
		n := &node{name: name, conf: filepath.Join(t.TempDir(), name+".conf"), top: t}
		if err := os.WriteFile(n.conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		n.restart(t)
		nodes = append(nodes, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.srv.NumRoutes() < count-1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d routes after 10s, want %d", n.name, n.srv.NumRoutes(), count-1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// pingCount asks the servers who they are, as the client does, and counts
// the answers that arrive within a moment.
func pingCount(t *testing.T, nc *nats.Conn) int {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(resolver.SubjectServerPing, inbox, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

// inboxUserCreds writes the creds of a system account user that may
// subscribe only to replies under inboxPrefix and to the server events: no
// "_INBOX.>".
func inboxUserCreds(t *testing.T, res *bootstrap.Result, inboxPrefix string) string {
	t.Helper()
	return sysUserCreds(t, res, "resolver-test", func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add("$SYS.REQ.CLAIMS.>", "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", "$SYS.REQ.SERVER.PING.>")
		uc.Sub.Allow.Add(inboxPrefix+".>", resolver.SubjectServerStatsz, resolver.SubjectServerShutdown)
	})
}

// pingOnlyCreds writes the creds of a system account user that may use
// the claims API and ping the servers, and subscribe only to replies under
// inboxPrefix: not to the server events.
func pingOnlyCreds(t *testing.T, res *bootstrap.Result, inboxPrefix string) string {
	t.Helper()
	return sysUserCreds(t, res, "pinger", func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add("$SYS.REQ.CLAIMS.>", "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", "$SYS.REQ.SERVER.PING.>")
		uc.Sub.Allow.Add(inboxPrefix + ".>")
	})
}

// sysUserCreds writes the creds of a system account user, signed by the
// system account's signing key that Init puts aside, with the permissions
// that perms sets (none: everything allowed).
func sysUserCreds(t *testing.T, res *bootstrap.Result, name string, perms func(*jwt.UserClaims)) string {
	t.Helper()
	return provtest.SystemUserCreds(t, res.Dir, res.SystemAccount, name, perms)
}

// waitFor polls cond every 10ms until it holds, and returns how long that
// took; it fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// findServer returns the named server of a list.
func findServer(list []provision.Server, name string) (provision.Server, bool) {
	i := slices.IndexFunc(list, func(s provision.Server) bool { return s.Name == name })
	if i < 0 {
		return provision.Server{}, false
	}
	return list[i], true
}

// awaitJoined waits for a node, with its current ID, on a Joined channel,
// skipping others (a loaded machine may make a server miss a ping and come
// back).
func awaitJoined(t *testing.T, ch <-chan provision.Server, n *node, limit time.Duration) provision.Server {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case s, ok := <-ch:
			if !ok {
				t.Fatal("Joined closed")
			}
			if s.Name == n.name && s.ID == n.srv.ID() {
				return s
			}
		case <-timer.C:
			t.Fatalf("%s (%s) did not join within %s", n.name, n.srv.ID(), limit)
		}
	}
}

func TestCluster(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, res, 3)
	op := operator(t, res.Dir)
	ctx := context.Background()

	// Both clients connect to node-a only, which stays up.
	connect := func(t *testing.T, creds string, opts ...nats.Option) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(nodes[0].srv.URL(), append([]nats.Option{nats.UserCredentials(creds), nats.DontRandomize(), nats.NoReconnect()}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// The provisioner's creds may read replies under their own inbox
	// prefix only.
	const prefix = bootstrap.ProvisionerInboxPrefix
	// The servers answer pings across the routes once the system
	// account's interest has spread; wait for that, so that the clients'
	// first refresh finds all of them.
	probe := connect(t, res.ProvisionerCreds, nats.CustomInboxPrefix(prefix))
	waitFor(t, 5*time.Second, "three servers answer the ping", func() bool { return pingCount(t, probe) == 3 })

	// ev has the provisioner's creds, which allow replies only under their
	// custom inbox prefix, and follows the server events. Its refresh is
	// too rare to matter here: what it notices, it notices from events.
	const evTimeout = 5 * time.Second
	var evLog provtest.SyncBuffer
	evConn := connect(t, res.ProvisionerCreds, nats.CustomInboxPrefix(prefix))
	ev := newClient(t, evConn, resolver.Options{
		Timeout: evTimeout, RefreshInterval: time.Minute, ForgetAfter: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&evLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	// pg is a user that may not subscribe to the server events: it
	// notices by pinging, often, and forgets fast. Its timeout is short to
	// keep the test short, long enough for a loaded machine.
	const pgTimeout, pgRefresh, pgForget = 2 * time.Second, 250 * time.Millisecond, 4 * time.Second
	var pgLog provtest.SyncBuffer
	pg := newClient(t, connect(t, pingOnlyCreds(t, res, "_INBOX_pinger"), nats.CustomInboxPrefix("_INBOX_pinger")), resolver.Options{
		Timeout: pgTimeout, RefreshInterval: pgRefresh, ForgetAfter: pgForget,
		Logger: slog.New(slog.NewTextHandler(&pgLog, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ev's log:\n%s", evLog.String())
			t.Logf("pg's log:\n%s", pgLog.String())
		}
	})

	t.Run("inbox prefix enforced", func(t *testing.T) {
		// The same creds without the prefix: the reply inbox is refused,
		// and New says so instead of timing out on every request.
		nc := connect(t, res.ProvisionerCreds)
		_, err := resolver.New(ctx, nc, resolver.Options{Timeout: time.Second})
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("New on a connection whose inbox is not allowed: %v, want a permissions violation", err)
		}
		if err := evConn.LastError(); err != nil {
			t.Errorf("the prefixed connection has an error: %v", err)
		}
		if strings.Contains(evLog.String(), "cannot follow server events") {
			t.Errorf("the provisioner creds cannot follow server events; ev's log:\n%s", evLog.String())
		}
		if !strings.Contains(pgLog.String(), "cannot follow server events") {
			t.Errorf("no warning that creds without the server events cannot follow them; pg's log:\n%s", pgLog.String())
		}
	})

	t.Run("servers known by name", func(t *testing.T) {
		for _, c := range []*resolver.Client{ev, pg} {
			got := c.Servers()
			if len(got) != len(nodes) {
				t.Fatalf("Servers() = %+v, want %d", got, len(nodes))
			}
			for i, s := range got {
				if s.Name != nodes[i].name || s.ID != nodes[i].srv.ID() || !s.Up {
					t.Errorf("server %d = %+v, want %s (%s) up", i, s, nodes[i].name, nodes[i].srv.ID())
				}
				if since := time.Since(s.LastSeen); since < 0 || since > 10*time.Second {
					t.Errorf("%s last seen %s ago", s.Name, since)
				}
			}
		}
		select {
		case s := <-ev.Joined():
			t.Errorf("Joined delivered %+v, found by the first refresh", s)
		default:
		}
	})

	pub, token := newAccount(t, "clustered", op.Signer)
	t.Run("push names each server", func(t *testing.T) {
		start := time.Now()
		result, err := ev.Update(ctx, token)
		if err != nil {
			t.Fatalf("Update: %v (result %+v)", err, result)
		}
		if took := time.Since(start); took > evTimeout/2 {
			t.Errorf("Update took %s: it waited for the timeout instead of the last reply", took)
		}
		if len(result) != len(nodes) || result.Stored() != len(nodes) {
			t.Fatalf("result %+v, want one stored reply per server", result)
		}
		for i, r := range result {
			if r.Server != nodes[i].name || r.ServerID != nodes[i].srv.ID() {
				t.Errorf("reply %d from %s (%s), want %s (%s)", i, r.Server, r.ServerID, nodes[i].name, nodes[i].srv.ID())
			}
			if r.Code != 200 || r.Message != "jwt updated" || !r.Stored || !r.Answered {
				t.Errorf("reply %d = %+v, want 200 \"jwt updated\", stored", i, r)
			}
		}
	})

	t.Run("lookup all, list, operators", func(t *testing.T) {
		all, err := ev.LookupAll(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(nodes) || slices.ContainsFunc(all, func(s string) bool { return s != token }) {
			t.Errorf("LookupAll = %d answers, want %d, each the pushed JWT", len(all), len(nodes))
		}
		list, err := ev.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ops, err := pg.Operators(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(nodes) || len(ops) != len(nodes) {
			t.Errorf("List has %d servers, Operators %d, want %d", len(list), len(ops), len(nodes))
		}
		for _, n := range nodes {
			if !slices.Contains(list[n.name], pub) {
				t.Errorf("List[%s] = %v, want it to hold %s", n.name, list[n.name], pub)
			}
			if !containsAll(ops[n.name], res.OperatorSigning, res.Operator) {
				t.Errorf("Operators[%s] = %v, want the operator %s and its signing key %s", n.name, ops[n.name], res.Operator, res.OperatorSigning)
			}
		}
	})

	t.Run("refused by every server", func(t *testing.T) {
		_, idToken := newAccount(t, "by-identity", identityKey(t, res.Dir))
		result, err := ev.Update(ctx, idToken)
		var re *provision.RefusedError
		if !errors.As(err, &re) || !errors.Is(err, provision.ErrRefused) {
			t.Fatalf("Update: %v, want a *RefusedError", err)
		}
		if len(re.Result) != len(nodes) || re.Result.Stored() != 0 || len(result) != len(nodes) {
			t.Fatalf("refusal result %+v, want %d answered refusals", re.Result, len(nodes))
		}
		for i, r := range re.Result {
			if r.Server != nodes[i].name || !r.Answered || r.Code == 200 || !strings.Contains(re.Reason, r.Message) {
				t.Errorf("reply %d = %+v; reason %q", i, r, re.Reason)
			}
		}
	})

	t.Run("delete answered by all", func(t *testing.T) {
		_, tok := newAccount(t, "to-delete", op.Signer)
		if _, err := ev.Update(ctx, tok); err != nil {
			t.Fatal(err)
		}
		claims, _ := jwt.DecodeAccountClaims(tok)
		result, err := pg.Delete(ctx, deleteToken(t, op.Signer, claims.Subject))
		if err != nil || len(result) != len(nodes) || result.Stored() != len(nodes) {
			t.Fatalf("Delete: %v, result %+v, want %d stored replies", err, result, len(nodes))
		}
	})

	// node-c stops. Both clients see it go down; pushes stop waiting for
	// it; it stays listed until forgotten.
	gone := nodes[2]
	oldID := gone.srv.ID()
	down := func(c *resolver.Client) func() bool {
		return func() bool {
			s, ok := findServer(c.Servers(), gone.name)
			return ok && !s.Up
		}
	}
	gone.srv.Stop()
	stopped := time.Now()
	var evDown, pgDown time.Duration
	t.Run("down by shutdown event", func(t *testing.T) {
		// ev refreshes once a minute: only the SHUTDOWN event can tell it
		// this fast.
		evDown = waitFor(t, evTimeout, "ev sees node-c down", down(ev))
		t.Logf("SHUTDOWN event: node-c down after %s", evDown)
	})
	t.Run("down by missed ping", func(t *testing.T) {
		// pg pings every 250ms and waits 2s for an answer: the first ping
		// after the stop marks it down. The bound leaves room for a loaded
		// machine, not for a second ping.
		pgDown = time.Since(stopped) + waitFor(t, pgRefresh+pgTimeout*3/2, "pg sees node-c down", down(pg))
		t.Logf("missed ping: node-c down after %s", pgDown)
		if !strings.Contains(pgLog.String(), "missed the server ping") {
			t.Errorf("pg did not log the missed ping")
		}
	})

	pub2, token2 := newAccount(t, "while-c-is-down", op.Signer)
	t.Run("push does not wait for a server that is down", func(t *testing.T) {
		for name, tc := range map[string]struct {
			c       *resolver.Client
			timeout time.Duration
		}{"ev": {ev, evTimeout}, "pg": {pg, pgTimeout}} {
			start := time.Now()
			result, err := tc.c.Update(ctx, token2)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%s: Update: %v (result %+v)", name, err, result)
			}
			if took > tc.timeout/2 {
				t.Errorf("%s: Update took %s; it waited for the server that is down", name, took)
			}
			if len(result) != 3 || result.Stored() != 2 {
				t.Fatalf("%s: result %+v, want 3 replies, 2 stored", name, result)
			}
			r := result[2]
			if r.Server != gone.name || r.ServerID != oldID || r.Answered || r.Stored || r.Code != 504 || !strings.Contains(r.Message, "down") {
				t.Errorf("%s: reply for node-c = %+v, want not answered, 504, saying it is down", name, r)
			}
		}
		all, err := ev.LookupAll(ctx, pub2)
		if err != nil || len(all) != 2 {
			t.Errorf("LookupAll: %d answers, %v; want the 2 servers up", len(all), err)
		}
	})

	t.Run("down server stays listed, then is forgotten", func(t *testing.T) {
		s, ok := findServer(ev.Servers(), gone.name)
		if !ok || s.Up || s.ID != oldID {
			t.Fatalf("ev lists node-c as %+v (listed %t), want it down with its last ID", s, ok)
		}
		// pg forgets after 4s without a sign of life.
		forgot := waitFor(t, pgForget, "pg forgets node-c", func() bool {
			_, ok := findServer(pg.Servers(), gone.name)
			return !ok
		})
		t.Logf("pg forgot node-c %s after it went down", pgDown+forgot)
		if len(pg.Servers()) != 2 {
			t.Errorf("pg lists %+v, want node-a and node-b", pg.Servers())
		}
		result, err := pg.Update(ctx, token2)
		if err != nil || len(result) != 2 {
			t.Errorf("a push after forgetting: %v, %+v; want 2 replies", err, result)
		}
		if _, ok := findServer(ev.Servers(), gone.name); !ok {
			t.Error("ev forgot node-c within its one-minute ForgetAfter")
		}
	})

	t.Run("restart with the same name joins", func(t *testing.T) {
		start := time.Now()
		gone.restart(t)
		ready := time.Now()
		// A joined server's LastSeen is when the client heard from it.
		s := awaitJoined(t, ev.Joined(), gone, 10*time.Second)
		if s.ID != gone.srv.ID() || s.ID == oldID || !s.Up {
			t.Errorf("Joined %+v, want node-c up with its new ID %s", s, gone.srv.ID())
		}
		t.Logf("Joined by STATSZ: %s after Start was called, %s after node-c accepted clients", s.LastSeen.Sub(start), s.LastSeen.Sub(ready))
		if s.LastSeen.Sub(ready) > evTimeout {
			t.Errorf("Joined took %s after the restart", s.LastSeen.Sub(ready))
		}
		ps := awaitJoined(t, pg.Joined(), gone, 10*time.Second)
		if ps.ID != gone.srv.ID() {
			t.Errorf("pg Joined %+v, want the new ID", ps)
		}
		t.Logf("Joined by ping every 250ms (a new name to pg): %s after node-c accepted clients", ps.LastSeen.Sub(ready))
		if got, ok := findServer(ev.Servers(), gone.name); !ok || !got.Up || got.ID != gone.srv.ID() {
			t.Errorf("ev lists node-c as %+v", got)
		}
	})

	t.Run("lookup all sees the server that missed a push", func(t *testing.T) {
		// node-c came back from its old disk: it lacks the account pushed
		// while it was down, and says so with an empty answer.
		all, err := ev.LookupAll(ctx, pub2)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(all)
		if len(all) != 3 || all[0] != "" || all[1] != token2 || all[2] != token2 {
			empty := len(slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s != "" }))
			t.Errorf("LookupAll = %d answers, %d of them empty; want 3 with exactly one empty", len(all), empty)
		}
		list, err := ev.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			if holds := slices.Contains(list[n.name], pub2); holds != (n != gone) {
				t.Errorf("List[%s] holds %s: %t", n.name, pub2, holds)
			}
		}
	})
}

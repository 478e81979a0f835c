package e2e

// A cluster of real nats-server processes made from one deployment: each
// server gets its own config, derived from the nats-server.conf that
// `provisioner init` wrote (operator, system account, resolver and its
// preload carried over), with its own name, client port, resolver
// directory and a cluster block whose routes name every server. Servers
// are started, stopped (SIGTERM), killed (SIGKILL) and started again with
// the same directory and ports, so that a server can come back with the
// old disk it had.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// clusterOptions tune newCluster.
type clusterOptions struct {
	// ResolverInterval replaces the resolver's sync interval (a Go
	// duration such as "2s"); "" keeps the deployment's.
	ResolverInterval string
}

// natsCluster is a set of nats-server processes routed to each other.
type natsCluster struct {
	t     *testing.T
	d     *deployment
	nodes []*clusterNode
	obs   *nats.Conn
}

// clusterNode is one server of a natsCluster. Its ports and directory stay
// the same across restarts.
type clusterNode struct {
	name        string
	port        int
	clusterPort int
	url         string
	resolverDir string
	conf        string
	proc        *proc // the running process, nil before the first start
	started     time.Time
}

// newCluster writes the configs of n servers derived from the deployment's
// nats-server.conf; it starts none of them. The first server listens on the
// deployment's own port, so d.url and the deployment's config.json reach it.
// JetStream is left out: the file store does not need it, and a JetStream
// cluster of fewer than three servers has no quorum to lose.
func newCluster(t *testing.T, d *deployment, n int, opts clusterOptions) *natsCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("newCluster: %d servers", n)
	}
	base := filepath.Join(d.dir, "nats-server.conf")
	orig, err := conf.ParseFile(base)
	if err != nil {
		t.Fatalf("parse %s: %v", base, err)
	}
	res, ok := orig["resolver"].(map[string]any)
	if !ok || res["type"] != "full" {
		t.Fatalf("%s has no full resolver block: %v", base, orig["resolver"])
	}
	origName, _ := orig["server_name"].(string)
	if origName == "" {
		origName = "nats"
	}
	c := &natsCluster{t: t, d: d}
	root := t.TempDir()
	for i := range n {
		nd := &clusterNode{
			name:        fmt.Sprintf("%s-%c", origName, 'a'+i),
			port:        d.port,
			clusterPort: provtest.FreePort(t),
		}
		if i > 0 {
			nd.port = provtest.FreePort(t)
		}
		nd.url = fmt.Sprintf("nats://127.0.0.1:%d", nd.port)
		nd.resolverDir = filepath.Join(root, nd.name, "jwt")
		nd.conf = filepath.Join(root, nd.name+".conf")
		if err := os.MkdirAll(nd.resolverDir, 0o700); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		m := confClone(orig)
		m["server_name"] = nd.name
		m["listen"] = fmt.Sprintf("127.0.0.1:%d", nd.port)
		delete(m, "jetstream")
		r := confClone(res)
		r["dir"] = nd.resolverDir
		if opts.ResolverInterval != "" {
			if _, err := time.ParseDuration(opts.ResolverInterval); err != nil {
				t.Fatalf("newCluster: ResolverInterval: %v", err)
			}
			r["interval"] = opts.ResolverInterval
		}
		m["resolver"] = r
		if n > 1 {
			var routes []any
			for _, o := range c.nodes {
				if o != nd {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.clusterPort))
				}
			}
			m["cluster"] = map[string]any{
				"name":   "provisioner-e2e",
				"listen": fmt.Sprintf("127.0.0.1:%d", nd.clusterPort),
				"routes": routes,
			}
		}
		text := "# Derived by the e2e tests from " + base + ".\n" + encodeConf(t, m, 0)
		if err := os.WriteFile(nd.conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		// The derived config must say what it was meant to.
		back, err := conf.ParseFile(nd.conf)
		if err != nil {
			t.Fatalf("the derived config %s does not parse: %v\n%s", nd.conf, err, text)
		}
		if back["server_name"] != nd.name || back["resolver"].(map[string]any)["dir"] != nd.resolverDir {
			t.Fatalf("the derived config %s lost its name or resolver dir:\n%s", nd.conf, text)
		}
	}
	return c
}

// confClone copies a parsed config map one level deep.
func confClone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// encodeConf writes a parsed config back in the server's config syntax:
// keys sorted, strings quoted.
func encodeConf(t *testing.T, m map[string]any, depth int) string {
	t.Helper()
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	indent := strings.Repeat("  ", depth)
	for _, k := range keys {
		key := k
		if strings.Trim(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			key = strconv.Quote(k)
		}
		fmt.Fprintf(&b, "%s%s: %s\n", indent, key, encodeValue(t, m[k], depth))
	}
	return b.String()
}

func encodeValue(t *testing.T, v any, depth int) string {
	t.Helper()
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case map[string]any:
		return "{\n" + encodeConf(t, v, depth+1) + strings.Repeat("  ", depth) + "}"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = encodeValue(t, e, depth+1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	t.Fatalf("encodeConf: cannot write a %T (%v)", v, v)
	return ""
}

// node returns server i.
func (c *natsCluster) node(i int) *clusterNode { return c.nodes[i] }

// urls returns every server's client URL, comma-separated.
func (c *natsCluster) urls() string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.url)
	}
	return strings.Join(out, ",")
}

// startAll starts every server and waits until each sees all the others.
func (c *natsCluster) startAll() {
	c.t.Helper()
	for i := range c.nodes {
		c.start(i)
	}
	c.waitFormed(15 * time.Second)
}

// start starts server i with its config and directory, and waits until
// its client port accepts connections.
func (c *natsCluster) start(i int) {
	t := c.t
	t.Helper()
	nd := c.nodes[i]
	if nd.proc != nil && !nd.proc.exited() {
		t.Fatalf("start %s: it is running", nd.name)
	}
	nd.proc = start(t, c.d.ctx, nd.name, c.d.env, c.d.natsServer, "-c", nd.conf)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nd.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			nd.started = time.Now()
			return
		}
		if nd.proc.exited() {
			t.Fatalf("%s exited: %v\n%s", nd.name, nd.proc.err, nd.proc.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept connections on %s within 10s: %v", nd.name, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops server i with SIGTERM, as an orderly shutdown: it announces
// it on $SYS.SERVER.<id>.SHUTDOWN.
func (c *natsCluster) stop(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if err := nd.proc.stop(10 * time.Second); err != nil && !nd.proc.exited() {
		c.t.Fatalf("stop %s: %v", nd.name, err)
	}
}

// kill kills server i with SIGKILL: no shutdown event, no goodbye to its
// routes.
func (c *natsCluster) kill(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.proc == nil || nd.proc.exited() {
		c.t.Fatalf("kill %s: not running", nd.name)
	}
	if err := nd.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill -9 %s: %v", nd.name, err)
	}
	<-nd.proc.done
}

// observer returns a connection of the provisioner's system user to any
// server of the cluster, made on first use, that the test reads the
// servers' resolvers with.
func (c *natsCluster) observer() *nats.Conn {
	c.t.Helper()
	if c.obs == nil {
		c.obs = c.sysConnURL(c.urls())
	}
	return c.obs
}

// sysConnURL connects to url as the provisioner's system user, the one
// user allowed to ask the servers' claims API, and closes the connection
// when the test ends.
func (c *natsCluster) sysConnURL(url string) *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(url,
		nats.UserCredentials(filepath.Join(c.d.dir, "provisioner.creds")),
		nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix),
		nats.Name("e2e-observer"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatalf("connect to %s as the provisioner user: %v", url, err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// waitFormed waits until a server ping sent to each running server is
// answered by every running server: the routes are up and the system
// account's interest has spread.
func (c *natsCluster) waitFormed(within time.Duration) {
	t := c.t
	t.Helper()
	var running []string
	for _, nd := range c.up() {
		running = append(running, nd.name)
	}
	slices.Sort(running)
	deadline := time.Now().Add(within)
	for _, nd := range c.up() {
		nc := c.sysConnURL(nd.url)
		for {
			got := gatherReplies(nc, "$SYS.REQ.SERVER.PING.IDZ", nil, len(running), 500*time.Millisecond)
			var names []string
			for _, m := range got {
				var id struct {
					Name string `json:"name"`
				}
				if json.Unmarshal(m.Data, &id) == nil {
					names = append(names, id.Name)
				}
			}
			slices.Sort(names)
			if slices.Equal(names, running) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not form within %s: %s hears %v, want %v", within, nd.name, names, running)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nc.Close()
	}
}

// gatherReplies sends a request and collects replies until want have arrived
// or wait has passed.
func gatherReplies(nc *nats.Conn, subject string, data []byte, want int, wait time.Duration) []*nats.Msg {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subject, inbox, data); err != nil {
		return nil
	}
	var out []*nats.Msg
	deadline := time.Now().Add(wait)
	for len(out) < want {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		m, err := sub.NextMsg(left)
		if err != nil {
			break
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			break // no responders
		}
		out = append(out, m)
	}
	return out
}

// up returns the servers that are running.
func (c *natsCluster) up() []*clusterNode {
	var out []*clusterNode
	for _, nd := range c.nodes {
		if nd.proc != nil && !nd.proc.exited() {
			out = append(out, nd)
		}
	}
	return out
}

// lookupAll asks every running server for its JWT of an account
// ($SYS.REQ.ACCOUNT.<pub>.CLAIMS.LOOKUP; each full resolver answers, with
// an empty message when it holds none) and returns the answers. Replies do
// not name their server; there is one per server. It waits at most a
// second: a server that has just joined may not hear requests yet.
func (c *natsCluster) lookupAll(pub string) []string {
	c.t.Helper()
	n := len(c.up())
	msgs := gatherReplies(c.observer(), fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", pub), nil, n, time.Second)
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, string(m.Data))
	}
	return out
}

// listAll asks every running server for the accounts its resolver holds
// ($SYS.REQ.CLAIMS.LIST) and returns them by server name. A server that
// did not answer within a second is missing from the map: a server that
// has just joined may not hear requests yet.
func (c *natsCluster) listAll() map[string][]string {
	c.t.Helper()
	n := len(c.up())
	out := map[string][]string{}
	for _, m := range gatherReplies(c.observer(), "$SYS.REQ.CLAIMS.LIST", nil, n, time.Second) {
		var rep struct {
			Data   []string `json:"data"`
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
		}
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			c.t.Fatalf("LIST reply: %v: %s", err, m.Data)
		}
		out[rep.Server.Name] = rep.Data
	}
	return out
}

// diskJWT returns the JWT of an account in the server's resolver directory
// (one file per account, named for its public key), "" when there is none.
// Read while the server is stopped, it is what the server starts with.
func (nd *clusterNode) diskJWT(t *testing.T, pub string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nd.resolverDir, pub+".jwt"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

package e2e

// Drift tests: the store and the servers must not disagree for long, and
// nothing acknowledged may be lost, whatever happens to `provisioner
// serve` or to a server. Everything runs as a deployment does: the built
// binary with a file store from `provisioner init --store file`, real
// nats-server processes (see cluster_test.go), and nats.go clients for the
// load and the checks. Crashes that must fall between two steps use the
// binary's test-only fault point (PROVISIONER_FAULT).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// svcError is a service error reply, {"error":{"code":N,"description":"..."}}.
type svcError struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
}

func (e *svcError) Error() string { return fmt.Sprintf("service error %d: %s", e.Code, e.Description) }

// provCall sends a request to the service and decodes the reply into out
// (which may be nil). It returns a *svcError for an error reply and the
// transport's error (nats.ErrTimeout, nats.ErrNoResponders) when there was
// no reply.
func provCall(nc *nats.Conn, subject string, req any, timeout time.Duration, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := nc.Request(subject, body, timeout)
	if err != nil {
		return err
	}
	var e struct {
		Error *svcError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return fmt.Errorf("%s: the reply is not JSON: %w: %q", subject, err, m.Data)
	}
	if e.Error != nil {
		return e.Error
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(m.Data, out)
}

// Wire shapes of the replies the tests read.
type (
	wireServerReply struct {
		Server string `json:"server"`
		Code   int    `json:"code"`
	}
	wireAccount struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
		JWT       string `json:"jwt"`
	}
	accountReply struct {
		Account  wireAccount       `json:"account"`
		Resolver []wireServerReply `json:"resolver"`
	}
	deleteReply struct {
		Deleted  string            `json:"deleted"`
		Phase    string            `json:"phase"`
		Waiting  []string          `json:"waiting"`
		Resolver []wireServerReply `json:"resolver"`
	}
	userReply struct {
		User struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key"`
			JWT       string `json:"jwt"`
			Seed      string `json:"seed"`
		} `json:"user"`
	}
	userListReply struct {
		Users []struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key"`
			Revoked   bool   `json:"revoked"`
		} `json:"users"`
		NextOffset int `json:"next_offset"`
	}
	accountListReply struct {
		Accounts   []wireAccount `json:"accounts"`
		Total      int           `json:"total"`
		NextOffset int           `json:"next_offset"`
	}
	reconcileReply struct {
		Servers  int      `json:"servers"`
		Up       int      `json:"up"`
		Accounts int      `json:"accounts"`
		Checked  int      `json:"checked"`
		Pushed   int      `json:"pushed"`
		Deleted  int      `json:"deleted"`
		Failed   int      `json:"failed"`
		Orphans  []string `json:"orphans"`
		Duration string   `json:"duration"`
	}
)

// driftEnv is a deployment with a cluster of servers and `provisioner
// serve` processes started from one config.
type driftEnv struct {
	t       *testing.T
	d       *deployment
	cl      *natsCluster
	cfgPath string
	// admin is the admin user's connection to the first server, which no
	// test stops.
	admin *nats.Conn
}

type driftOptions struct {
	servers          int
	resolverInterval string
	// config overrides fields of the config.json init wrote.
	config map[string]any
}

func newDriftEnv(t *testing.T, o driftOptions) *driftEnv {
	t.Helper()
	d := newDeployment(t)
	e := &driftEnv{t: t, d: d, cl: newCluster(t, d, o.servers, clusterOptions{ResolverInterval: o.resolverInterval})}
	e.cl.startAll()

	raw, err := os.ReadFile(filepath.Join(d.dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["store_dir"] == nil || cfg["store_dir"] == "" {
		t.Fatalf("config.json of `init --store file` has no store_dir: %s", raw)
	}
	for k, v := range o.config {
		cfg[k] = v
	}
	out, _ := json.MarshalIndent(cfg, "", "  ")
	e.cfgPath = filepath.Join(d.dir, "config-drift.json")
	if err := os.WriteFile(e.cfgPath, out, 0o600); err != nil {
		t.Fatal(err)
	}

	e.admin, err = nats.Connect(e.cl.node(0).url,
		nats.UserCredentials(filepath.Join(d.dir, "admin.creds")),
		nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix),
		nats.Name("e2e-admin"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	t.Cleanup(e.admin.Close)
	return e
}

// startServe starts `provisioner serve` on the env's config, connected to
// the first server, with extra environment variables; it does not wait.
func (e *driftEnv) startServe(extraEnv ...string) *proc {
	e.t.Helper()
	env := append(append([]string(nil), e.d.env...), extraEnv...)
	return start(e.t, e.d.ctx, "provisioner serve", env, e.d.provisioner, "serve", "--config", e.cfgPath, "--nats-url", e.cl.node(0).url)
}

// serve starts `provisioner serve` and waits until it answers.
func (e *driftEnv) serve(extraEnv ...string) *proc {
	e.t.Helper()
	p := e.startServe(extraEnv...)
	e.waitServing(p, 15*time.Second)
	return p
}

// waitServing waits until prov.status is answered.
func (e *driftEnv) waitServing(p *proc, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := provCall(e.admin, "prov.status", struct{}{}, 500*time.Millisecond, nil)
		if err == nil {
			return
		}
		if p.exited() {
			e.t.Fatalf("provisioner serve exited: %v\n%s", p.err, p.out.String())
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("provisioner serve did not answer prov.status within %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends a request that must succeed.
func (e *driftEnv) call(subject string, req, out any) {
	e.t.Helper()
	if err := provCall(e.admin, subject, req, 15*time.Second, out); err != nil {
		e.t.Fatalf("%s %v: %v", subject, req, err)
	}
}

// reconcile runs a reconcile pass and returns its summary.
func (e *driftEnv) reconcile() reconcileReply {
	e.t.Helper()
	var rep reconcileReply
	e.call("prov.reconcile", struct{}{}, &rep)
	return rep
}

// storeJWT returns the store's JWT of an account (account.get), "" with a
// 404.
func (e *driftEnv) storeJWT(ref string) string {
	e.t.Helper()
	var rep accountReply
	err := provCall(e.admin, "prov.account.get", map[string]string{"account": ref}, 10*time.Second, &rep)
	var se *svcError
	if errors.As(err, &se) && se.Code == 404 {
		return ""
	}
	if err != nil {
		e.t.Fatalf("account.get %s: %v", ref, err)
	}
	return rep.Account.JWT
}

// killedHard reports whether a process ended by SIGKILL.
func killedHard(p *proc) bool {
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// connectUser tries to connect to url as a user and closes the connection
// again. It returns nil when the server let the user in.
func connectUser(url, userJWT, seed string) error {
	return connectUserWithin(url, userJWT, seed, 2*time.Second)
}

// connectUserWithin is connectUser with a bound on the connect. A server
// that does not hold an account asks the others for it before it refuses,
// which can take it about two seconds.
//
// Only url is tried: a server's INFO names the other servers of its
// cluster, and nats.go would otherwise try them after a refusal, so that
// a user "let in by A" could be one let in by B.
func connectUserWithin(url, userJWT, seed string, timeout time.Duration) error {
	nc, err := nats.Connect(url, nats.UserJWTAndSeed(userJWT, seed),
		nats.NoReconnect(), nats.Timeout(timeout), nats.Name("e2e-user"), nats.IgnoreDiscoveredServers())
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// userRefused tells a server's refusal of a user (unknown or disabled
// account, revoked or expired user) from a failure to reach the server.
func userRefused(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthRevoked, nats.ErrAuthExpired, nats.ErrAccountAuthExpired, nats.ErrMaxAccountConnectionsExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// claimsOf decodes an account JWT.
func claimsOf(t *testing.T, token string) *jwt.AccountClaims {
	t.Helper()
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		t.Fatalf("decode account JWT %q: %v", token, err)
	}
	return c
}

// TestServeRefusesSecondOnStore starts a second `provisioner serve` on the
// store directory of a running one: it must exit non-zero within seconds,
// saying that the store is in use and by which process, and leave the
// store as the first one has it.
func TestServeRefusesSecondOnStore(t *testing.T) {
	t.Parallel()
	e := newDriftEnv(t, driftOptions{servers: 1})
	first := e.serve()
	e.call("prov.account.create", map[string]string{"name": "first"}, nil)

	began := time.Now()
	second := e.startServe()
	select {
	case <-second.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("a second provisioner serve on the same store_dir is still running after 15s:\n%s", second.out.String())
	}
	took := time.Since(began)
	t.Logf("the second serve exited after %s (%v): %s", took.Round(time.Millisecond), second.err, strings.TrimSpace(second.out.String()))
	var ee *exec.ExitError
	if !errors.As(second.err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("the second serve exited with %v, want a non-zero exit code\n%s", second.err, second.out.String())
	}
	out := second.out.String()
	pid := fmt.Sprintf("process %d", first.cmd.Process.Pid)
	if !strings.Contains(out, "store is in use") || !strings.Contains(out, pid) {
		t.Errorf("the second serve's output does not say the store is in use by %s:\n%s", pid, out)
	}
	if took > 10*time.Second {
		t.Errorf("the second serve took %s to refuse, want a few seconds", took)
	}

	// The first goes on, and what it stores is there after a restart.
	if first.exited() {
		t.Fatalf("the first serve exited: %v\n%s", first.err, first.out.String())
	}
	e.call("prov.account.create", map[string]string{"name": "second"}, nil)
	if err := first.stop(10 * time.Second); err != nil {
		t.Fatalf("stop the first serve: %v", err)
	}
	e.serve()
	var list accountListReply
	e.call("prov.account.list", struct{}{}, &list)
	var names []string
	for _, a := range list.Accounts {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "first,second" {
		t.Fatalf("after a restart the store lists %v, want [first second]", names)
	}
}

// TestOrphanReportedAndLeftAlone pushes an account behind the service's
// back (signed with the operator signing key from the deployment dir, sent
// with the provisioner's creds): prov.reconcile reports it as an orphan and
// the account stays on the server, unchanged, pass after pass.
func TestOrphanReportedAndLeftAlone(t *testing.T) {
	t.Parallel()
	e := newDriftEnv(t, driftOptions{servers: 1, config: map[string]any{"reconcile_interval": "1s"}})
	serve := e.serve()
	var known accountReply
	e.call("prov.account.create", map[string]string{"name": "known"}, &known)

	seed, err := os.ReadFile(filepath.Join(e.d.dir, "operator-signing.nk"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		t.Fatalf("operator-signing.nk: %v", err)
	}
	ident, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := ident.PublicKey()
	claims := jwt.NewAccountClaims(pub)
	claims.Name = "behind-the-back"
	token, err := claims.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	replies := gatherReplies(e.cl.observer(), "$SYS.REQ.CLAIMS.UPDATE", []byte(token), 1, 5*time.Second)
	if len(replies) != 1 || !strings.Contains(string(replies[0].Data), `"code":200`) {
		t.Fatalf("push of the orphan: want one 200 reply, got %d: %v", len(replies), replies)
	}

	for pass := range 2 {
		rep := e.reconcile()
		t.Logf("pass %d: %+v", pass, rep)
		if len(rep.Orphans) != 1 || rep.Orphans[0] != pub {
			t.Fatalf("prov.reconcile pass %d: orphans %v, want only the account pushed behind the service's back (%s); %s is managed", pass, rep.Orphans, pub, known.Account.PublicKey)
		}
		if rep.Failed != 0 {
			t.Errorf("prov.reconcile pass %d: %d failed", pass, rep.Failed)
		}
		// Let a timed pass run too.
		time.Sleep(1200 * time.Millisecond)
		lists := e.cl.listAll()
		if len(lists) != 1 || !slices.Contains(lists[e.cl.node(0).name], pub) {
			t.Fatalf("after pass %d the server no longer lists the orphan %s: %v", pass, pub, lists)
		}
		if got := e.cl.lookupAll(pub); len(got) != 1 || got[0] != token {
			t.Fatalf("after pass %d the server's JWT of the orphan changed: %q", pass, got)
		}
	}
	if e.storeJWT(pub) != "" {
		t.Errorf("account.get of the orphan answers: the service should not manage it")
	}
	if !strings.Contains(serve.out.String(), "orphan account") || !strings.Contains(serve.out.String(), pub) {
		t.Errorf("the service did not log the orphan %s:\n%s", pub, serve.out.String())
	}
}

// TestRevokeCrashWindow kills `provisioner serve` exactly between a
// revoke's store write and its push (the fault point): the server still
// lets the user in, and the store says revoked. After a restart without
// the fault, within one reconcile_interval, the user is refused.
func TestRevokeCrashWindow(t *testing.T) {
	t.Parallel()
	const interval = 2 * time.Second
	e := newDriftEnv(t, driftOptions{servers: 1, config: map[string]any{"reconcile_interval": interval.String()}})
	url := e.cl.node(0).url
	// Push 1 is the create, push 2 the revoke.
	serve := e.serve("PROVISIONER_FAULT=before-push:kill:acme:1")
	e.call("prov.account.create", map[string]string{"name": "acme"}, nil)
	var alice userReply
	e.call("prov.user.create", map[string]string{"account": "acme", "name": "alice"}, &alice)
	if err := connectUser(url, alice.User.JWT, alice.User.Seed); err != nil {
		t.Fatalf("alice cannot connect before the revoke: %v", err)
	}

	err := provCall(e.admin, "prov.user.revoke", map[string]string{"account": "acme", "user": "alice"}, 2*time.Second, nil)
	if err == nil {
		t.Fatalf("user.revoke was answered; the fault point should have killed the service before the push")
	}
	select {
	case <-serve.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("provisioner serve still runs after the fault point: %v\n%s", err, serve.out.String())
	}
	if !killedHard(serve) || !strings.Contains(serve.out.String(), "fault point before-push:kill:acme reached") {
		t.Fatalf("provisioner serve did not die at the fault point (%v):\n%s", serve.err, serve.out.String())
	}
	// The window: stored, not pushed.
	if err := connectUser(url, alice.User.JWT, alice.User.Seed); err != nil {
		t.Fatalf("alice cannot connect with the service dead before the revoke's push: %v; the fault did not fall between store and push", err)
	}

	restarted := time.Now()
	e.serve()
	ready := time.Since(restarted)
	for {
		err := connectUser(url, alice.User.JWT, alice.User.Seed)
		if userRefused(err) {
			break
		}
		if err != nil {
			t.Fatalf("connect as alice: %v", err)
		}
		if time.Since(restarted) > ready+interval+time.Second {
			t.Fatalf("alice still connects %s after the restart (serving after %s, reconcile_interval %s)", time.Since(restarted).Round(time.Millisecond), ready.Round(time.Millisecond), interval)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("alice refused %s after the restart (serving after %s)", time.Since(restarted).Round(time.Millisecond), ready.Round(time.Millisecond))

	var users userListReply
	e.call("prov.user.list", map[string]string{"account": "acme"}, &users)
	if len(users.Users) != 1 || users.Users[0].PublicKey != alice.User.PublicKey || !users.Users[0].Revoked {
		t.Fatalf("user.list after the restart: %+v, want alice revoked", users.Users)
	}
	// Only alice is out: the account works, and the name is free again.
	var again userReply
	e.call("prov.user.create", map[string]string{"account": "acme", "name": "alice"}, &again)
	if err := connectUser(url, again.User.JWT, again.User.Seed); err != nil {
		t.Fatalf("a new alice cannot connect: %v", err)
	}
	if err := connectUser(url, alice.User.JWT, alice.User.Seed); !userRefused(err) {
		t.Fatalf("the revoked alice: %v, want refused", err)
	}
}

// TestSecondVersionHoldsEverywhere: two versions of one account, made in
// quick succession, and a server that missed the second. The service gives
// each version a strictly greater iat, so the servers' own resolver sync
// (which keeps the greater iat, and with an equal one may swap) carries the
// second version to the returning server and never back the first: with
// the service stopped, after at most two resolver intervals both servers
// hold the second version, and still do an interval later.
func TestSecondVersionHoldsEverywhere(t *testing.T) {
	t.Parallel()
	const resolverInterval = 2 * time.Second
	e := newDriftEnv(t, driftOptions{servers: 2, resolverInterval: resolverInterval.String(),
		config: map[string]any{"resolver_timeout": "2s", "reconcile_interval": "2s"}})
	b := e.cl.node(1)
	serve := e.serve()
	var v0, v1, v2 accountReply
	e.call("prov.account.create", map[string]string{"name": "acme"}, &v0)
	pub := v0.Account.PublicKey
	e.call("prov.account.update", map[string]any{"account": "acme", "description": "first"}, &v1)
	if n := storedCount(v1.Resolver); n != 2 {
		t.Fatalf("the first update reached %d servers, want 2: %+v", n, v1.Resolver)
	}
	e.cl.stop(1)
	sent := time.Now()
	e.call("prov.account.update", map[string]any{"account": "acme", "description": "second"}, &v2)
	c1, c2 := claimsOf(t, v1.Account.JWT), claimsOf(t, v2.Account.JWT)
	t.Logf("first version iat %d; second requested at %d.%03d (%s after the first's iat second began), iat %d; resolver %+v",
		c1.IssuedAt, sent.Unix(), sent.Nanosecond()/1e6, sent.Sub(time.Unix(c1.IssuedAt, 0)).Round(time.Millisecond), c2.IssuedAt, v2.Resolver)
	if c2.IssuedAt <= c1.IssuedAt {
		t.Fatalf("the second version's iat %d is not greater than the first's %d", c2.IssuedAt, c1.IssuedAt)
	}
	if c2.Description != "second" || c1.Description != "first" {
		t.Fatalf("descriptions %q, %q", c1.Description, c2.Description)
	}
	for _, r := range v2.Resolver {
		if r.Server == b.name && r.Code == 200 {
			t.Fatalf("the stopped server %s confirmed the second version: %+v", b.name, v2.Resolver)
		}
	}
	if got := e.storeJWT(pub); got != v2.Account.JWT {
		t.Fatalf("the store does not hold the second version")
	}
	// Only the servers' own sync may carry it now.
	if err := serve.stop(10 * time.Second); err != nil {
		t.Fatalf("stop serve: %v", err)
	}

	if got := b.diskJWT(t, pub); got != v1.Account.JWT {
		t.Fatalf("%s's resolver directory holds %v, want the first version", b.name, describeJWTs([]string{got}))
	}
	e.cl.start(1)
	restarted := time.Now()
	e.cl.waitFormed(10 * time.Second)
	deadline := restarted.Add(2*resolverInterval + time.Second)
	for {
		got := e.cl.lookupAll(pub)
		if len(got) == 2 && got[0] == v2.Account.JWT && got[1] == v2.Account.JWT {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after %s restarted, the servers hold %v; want the second version on both", time.Since(restarted).Round(time.Millisecond), b.name, describeJWTs(got))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("both servers hold the second version %s after %s restarted", time.Since(restarted).Round(time.Millisecond), b.name)
	time.Sleep(resolverInterval + 500*time.Millisecond)
	if got := e.cl.lookupAll(pub); len(got) != 2 || got[0] != v2.Account.JWT || got[1] != v2.Account.JWT {
		t.Fatalf("a resolver interval later the servers hold %v", describeJWTs(got))
	}
	// The service finds nothing to repair.
	e.serve()
	if rep := e.reconcile(); rep.Pushed != 0 || rep.Failed != 0 || rep.Servers != 2 || rep.Up != 2 {
		t.Fatalf("prov.reconcile after the sync: %+v, want 2 servers up, nothing pushed or failed", rep)
	}
}

// storedCount counts the servers that stored a push.
func storedCount(rs []wireServerReply) int {
	n := 0
	for _, r := range rs {
		if r.Code == 200 {
			n++
		}
	}
	return n
}

// describeJWTs shows account JWTs by iat and description, for failures.
func describeJWTs(tokens []string) []string {
	var out []string
	for _, tok := range tokens {
		c, err := jwt.DecodeAccountClaims(tok)
		if err != nil {
			out = append(out, fmt.Sprintf("%q", tok))
			continue
		}
		out = append(out, fmt.Sprintf("iat=%d desc=%q jti=%s", c.IssuedAt, c.Description, c.ID))
	}
	return out
}

// attempt is one connection attempt of a poller.
type attempt struct {
	start, end time.Time
	err        error
}

// poller connects to a server as a user every period, until halted, and
// records every attempt.
type poller struct {
	mu       sync.Mutex
	attempts []attempt
	stop     chan struct{}
	done     chan struct{}
}

func startPoller(t *testing.T, url, userJWT, seed string, every time.Duration) *poller {
	t.Helper()
	p := &poller{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			a := attempt{start: time.Now()}
			a.err = connectUserWithin(url, userJWT, seed, 500*time.Millisecond)
			a.end = time.Now()
			p.mu.Lock()
			p.attempts = append(p.attempts, a)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(p.halt)
	return p
}

// halt stops the poller and waits for it; later calls do nothing.
func (p *poller) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// successes returns the attempts that got in.
func (p *poller) successes() []attempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []attempt
	for _, a := range p.attempts {
		if a.err == nil {
			out = append(out, a)
		}
	}
	return out
}

// firstReached returns the start of the first attempt that reached a
// server: one that got in or was refused.
func (p *poller) firstReached() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.attempts {
		if a.err == nil || userRefused(a.err) {
			return a.start
		}
	}
	return time.Time{}
}

func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.attempts)
}

// TestDeleteWhileServerDown deletes an account while server B of two is
// down (kill -9), then starts B again with its old resolver directory,
// which still holds the live account. A user polling server A never gets
// in after the delete's reply; on B it may get in until the service
// notices B (the test measures that window, and fails past 10s); within
// two resolver intervals plus one reconcile_interval of B's return the
// account is on neither server, and the delete has reached phase deleted.
func TestDeleteWhileServerDown(t *testing.T) {
	t.Parallel()
	const resolverInterval, reconcileInterval = 2 * time.Second, 2 * time.Second
	e := newDriftEnv(t, driftOptions{servers: 2, resolverInterval: resolverInterval.String(),
		config: map[string]any{"resolver_timeout": "2s", "reconcile_interval": reconcileInterval.String()}})
	a, b := e.cl.node(0), e.cl.node(1)
	serve := e.serve()
	var acct accountReply
	e.call("prov.account.create", map[string]string{"name": "doomed"}, &acct)
	pub := acct.Account.PublicKey
	var u userReply
	e.call("prov.user.create", map[string]string{"account": "doomed", "name": "u"}, &u)
	for _, nd := range []*clusterNode{a, b} {
		if err := connectUser(nd.url, u.User.JWT, u.User.Seed); err != nil {
			t.Fatalf("the user cannot connect to %s before the delete: %v", nd.name, err)
		}
	}
	onA := startPoller(t, a.url, u.User.JWT, u.User.Seed, 100*time.Millisecond)

	e.cl.kill(1)
	began := time.Now()
	var del deleteReply
	e.call("prov.account.delete", map[string]string{"account": "doomed"}, &del)
	replied := time.Now()
	t.Logf("delete with %s down answered in %s: phase %s, waiting %v, resolver %+v", b.name, replied.Sub(began).Round(time.Millisecond), del.Phase, del.Waiting, del.Resolver)
	if del.Deleted != pub || del.Phase != "disabled" || !slices.Contains(del.Waiting, b.name) {
		t.Fatalf("delete reply with %s down: %+v; want phase disabled, waiting for %s", b.name, del, b.name)
	}
	if len(onA.successes()) == 0 {
		t.Fatalf("the poller on %s never got in before the delete: it cannot show anything", a.name)
	}
	if e.storeJWT(pub) != "" {
		t.Fatalf("account.get of the deleted account still answers")
	}
	copies := e.cl.lookupAll(pub)
	if len(copies) != 1 || claimsOf(t, copies[0]).Limits.Conn != 0 {
		t.Fatalf("with %s down, %s holds %v; want the disabled version (conn 0)", b.name, a.name, describeJWTs(copies))
	}
	rep := e.reconcile()
	t.Logf("prov.reconcile with %s down: %+v", b.name, rep)
	if rep.Servers != 2 || rep.Up != 1 || rep.Deleted != 0 {
		t.Fatalf("prov.reconcile with %s down: %+v; want 2 servers, 1 up, the delete not finished", b.name, rep)
	}

	if got := b.diskJWT(t, pub); got != acct.Account.JWT {
		t.Fatalf("%s's resolver directory holds %v, want the live version it had", b.name, describeJWTs([]string{got}))
	}
	// B is polled more often: the window is expected to be short.
	onB := startPoller(t, b.url, u.User.JWT, u.User.Seed, 10*time.Millisecond)
	e.cl.start(1)
	back := b.started
	deadline := back.Add(2*resolverInterval + reconcileInterval)
	for {
		lists := e.cl.listAll()
		if len(lists) == 2 && !slices.Contains(lists[a.name], pub) && !slices.Contains(lists[b.name], pub) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after %s came back, the servers still list %s: %v", time.Since(back).Round(time.Millisecond), b.name, pub, lists)
		}
		time.Sleep(100 * time.Millisecond)
	}
	gone := time.Since(back)
	// Nothing brings it back: neither sync nor another pass.
	time.Sleep(resolverInterval + 500*time.Millisecond)
	onA.halt()
	onB.halt()
	if lists := e.cl.listAll(); len(lists) != 2 || slices.Contains(lists[a.name], pub) || slices.Contains(lists[b.name], pub) {
		t.Fatalf("a resolver interval later the account is back: %v", lists)
	}

	for _, s := range onA.successes() {
		if s.start.After(replied) {
			t.Errorf("the user got into %s at %s, %s after the delete's reply", a.name, s.end.Format(time.StampMilli), s.end.Sub(replied).Round(time.Millisecond))
		}
	}
	// The window runs from the first attempt that reached B to the end of
	// the last one that got in.
	in, reached := onB.successes(), onB.firstReached()
	window := time.Duration(0)
	if len(in) > 0 {
		window = in[len(in)-1].end.Sub(reached)
	}
	t.Logf("%s back: the user got in %d times (of %d attempts), for %s from the first attempt that reached it; the account was on neither server %s after it accepted connections; %d attempts on %s, none in after the delete",
		b.name, len(in), onB.count(), window.Round(time.Millisecond), gone.Round(time.Millisecond), onA.count(), a.name)
	if window > 10*time.Second {
		t.Errorf("the user got into %s for %s after it came back, want at most 10s", b.name, window)
	}
	// The pass that finished the delete says so in its summary.
	finished, logged := false, false
	for line := range strings.Lines(serve.out.String()) {
		finished = finished || strings.Contains(line, `msg="reconcile pass"`) && strings.Contains(line, " deleted=1 ")
		logged = logged || strings.Contains(line, "account deleted from every known server") && strings.Contains(line, "account="+pub)
	}
	if !finished || !logged {
		t.Errorf("the service logged no reconcile pass that finished the delete of %s:\n%s", pub, serve.out.String())
	}
	if rep := e.reconcile(); rep.Servers != 2 || rep.Up != 2 || rep.Pushed != 0 || rep.Failed != 0 || len(rep.Orphans) != 0 {
		t.Errorf("prov.reconcile after all: %+v; want 2 servers up, nothing pushed, failed or orphaned", rep)
	}
}

// outcome is what a client knows of a change it asked for.
type outcome int

const (
	// outcomeNone: not asked, or refused; nothing changed.
	outcomeNone outcome = iota
	// outcomeUnknown: asked, no answer (the service was killed, or the reply
	// was lost); the change may or may not have happened.
	outcomeUnknown
	outcomeAcked
)

// classify turns a request's error into what the client knows: an answer
// is acknowledged, an error reply or "no responders" changed nothing, and
// anything else is unknown.
func classify(err error) (o outcome, refusedCode int) {
	var se *svcError
	switch {
	case err == nil:
		return outcomeAcked, 0
	case errors.As(err, &se):
		return outcomeNone, se.Code
	case errors.Is(err, nats.ErrNoResponders):
		return outcomeNone, -1
	}
	return outcomeUnknown, 0
}

// loadAccount is what one load client knows of an account it created.
type loadAccount struct {
	name, pub string
	deleted   outcome
	// descs are the descriptions the account may have now: the last
	// acknowledged update's, and those of later updates left unanswered.
	descs []string
	users []*loadUser
}

func (a *loadAccount) live() bool { return a.deleted == outcomeNone }

type loadUser struct {
	pub, jwt, seed string
	revoked        outcome
}

// loadClient sends a mix of requests, one at a time, on accounts of its
// own, and records what was acknowledged.
type loadClient struct {
	id       int
	nc       *nats.Conn
	rnd      *rand.Rand
	seq      int
	accounts []*loadAccount
	// lost are the names of creates left unanswered.
	lost []string
	// counts by operation and outcome; codes of error replies.
	counts map[string]int
	codes  map[int]int
	// idle is set when the last request found no service.
	idle bool
}

func (c *loadClient) live() []*loadAccount {
	var out []*loadAccount
	for _, a := range c.accounts {
		if a.live() {
			out = append(out, a)
		}
	}
	return out
}

func (c *loadClient) note(op string, o outcome, code int) {
	c.idle = code == -1
	c.counts[fmt.Sprintf("%s %s", op, [...]string{"refused", "unknown", "acked"}[o])]++
	if code != 0 {
		c.codes[code]++
	}
}

// loadTimeout bounds a load request: one still unanswered then is left
// unknown (the service was most likely killed under it).
const loadTimeout = 1500 * time.Millisecond

// step sends one request.
func (c *loadClient) step() {
	c.seq++
	live := c.live()
	r := c.rnd.Float64()
	if len(live) == 0 || r < 0.2 {
		name := fmt.Sprintf("k%d-%d", c.id, c.seq)
		var rep accountReply
		o, code := classify(provCall(c.nc, "prov.account.create", map[string]string{"name": name}, loadTimeout, &rep))
		c.note("account.create", o, code)
		switch o {
		case outcomeAcked:
			c.accounts = append(c.accounts, &loadAccount{name: name, pub: rep.Account.PublicKey, descs: []string{""}})
		case outcomeUnknown:
			c.lost = append(c.lost, name)
		}
		return
	}
	a := live[c.rnd.IntN(len(live))]
	switch {
	case r < 0.5:
		var rep userReply
		o, code := classify(provCall(c.nc, "prov.user.create", map[string]string{"account": a.pub, "name": fmt.Sprintf("u%d", c.seq)}, loadTimeout, &rep))
		c.note("user.create", o, code)
		if o == outcomeAcked {
			a.users = append(a.users, &loadUser{pub: rep.User.PublicKey, jwt: rep.User.JWT, seed: rep.User.Seed})
		}
	case r < 0.65:
		var active []*loadUser
		for _, u := range a.users {
			if u.revoked == outcomeNone {
				active = append(active, u)
			}
		}
		if len(active) == 0 {
			return
		}
		u := active[c.rnd.IntN(len(active))]
		o, code := classify(provCall(c.nc, "prov.user.revoke", map[string]string{"account": a.pub, "user": u.pub}, loadTimeout, nil))
		c.note("user.revoke", o, code)
		u.revoked = max(u.revoked, o)
	case r < 0.88:
		desc := fmt.Sprintf("d%d-%d", c.id, c.seq)
		o, code := classify(provCall(c.nc, "prov.account.update", map[string]string{"account": a.pub, "description": desc}, loadTimeout, nil))
		c.note("account.update", o, code)
		switch o {
		case outcomeAcked:
			a.descs = []string{desc}
		case outcomeUnknown:
			a.descs = append(a.descs, desc)
		}
	default:
		o, code := classify(provCall(c.nc, "prov.account.delete", map[string]string{"account": a.pub}, loadTimeout, nil))
		c.note("account.delete", o, code)
		a.deleted = max(a.deleted, o)
	}
}

// TestKillUnderMixedLoad kills `provisioner serve` with SIGKILL five times
// while eight clients create accounts and users, revoke, update and delete,
// and starts it again each time. Afterwards, within about one
// reconcile_interval, every server holds the store's JWT of every managed
// account, every acknowledged delete is gone from every server's LIST,
// every acknowledged revoke keeps its user out, every acknowledged create
// (account or user) is there, and nothing is on the servers that the
// store does not know.
func TestKillUnderMixedLoad(t *testing.T) {
	t.Parallel()
	const (
		clients  = 8
		kills    = 5
		interval = 2 * time.Second
	)
	e := newDriftEnv(t, driftOptions{servers: 2, resolverInterval: "2s", config: map[string]any{
		"reconcile_interval": interval.String(),
		"resolver_timeout":   "2s",
		"reconcile_rate":     5000,
	}})
	serve := e.serve()
	var serves []*proc

	// The choices of the clients and the kill times come from one seed,
	// logged so that a failure's mix can be looked at again.
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	began := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := make([]*loadClient, clients)
	for i := range load {
		nc, err := nats.Connect(e.cl.node(0).url,
			nats.UserCredentials(filepath.Join(e.d.dir, "admin.creds")),
			nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix),
			nats.Name(fmt.Sprintf("e2e-load-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		c := &loadClient{id: i, nc: nc, rnd: rand.New(rand.NewPCG(seed, uint64(i))), counts: map[string]int{}, codes: map[int]int{}}
		load[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.step()
				if c.idle {
					// Nothing serves: wait for the restart.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	halt := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	t.Cleanup(halt)

	rnd := rand.New(rand.NewPCG(seed, clients))
	storeDir := filepath.Join(e.d.dir, "store")
	for k := range kills {
		time.Sleep(time.Second + time.Duration(rnd.Int64N(int64(time.Second))))
		// Most of a change's time goes to waiting for the next second;
		// the store write and the push take a millisecond or so. A kill
		// at a random time seldom falls between them, so every other
		// kill is aimed: right after the store writes a file.
		how := "at a random moment"
		if k%2 == 1 {
			how = "right after a store write"
			if !waitStoreWrite(storeDir, 2*time.Second) {
				how = "at a random moment (no store write within 2s)"
			}
		}
		if err := serve.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 serve: %v", err)
		}
		<-serve.done
		if serve.exited() && !killedHard(serve) {
			t.Fatalf("serve ended by itself before kill %d: %v\n%s", k+1, serve.err, serve.out.String())
		}
		restarted := time.Now()
		serves = append(serves, serve)
		serve = e.serve()
		t.Logf("kill %d %s, at %s; serving again after %s", k+1, how, restarted.Sub(began).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	halt()
	stopped := time.Now()
	t.Logf("load ran %s", stopped.Sub(began).Round(time.Millisecond))

	totals, codes := map[string]int{}, map[int]int{}
	for _, c := range load {
		for k, v := range c.counts {
			totals[k] += v
		}
		for k, v := range c.codes {
			codes[k] += v
		}
	}
	t.Logf("requests: %v; error replies by code (-1: no responders): %v", totals, codes)
	if codes[500] > 0 {
		t.Errorf("%d requests were answered with 500", codes[500])
	}

	// The service's own passes must bring everything in line within about
	// one reconcile_interval; the test only looks.
	deadline := stopped.Add(2*interval + 3*time.Second)
	var problems []string
	for i := 0; ; i++ {
		problems = e.driftProblems(load)
		if i == 0 {
			t.Logf("first look, %s after the load stopped: %d problems", time.Since(stopped).Round(time.Millisecond), len(problems))
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(problems) > 0 {
		t.Fatalf("%s after the load stopped, %d problems remain:\n%s", time.Since(stopped).Round(time.Millisecond), len(problems), strings.Join(problems, "\n"))
	}
	t.Logf("in line %s after the load stopped", time.Since(stopped).Round(time.Millisecond))
	// What the passes repaired, as each process logged it.
	repaired := map[string]int{}
	for _, p := range append(serves, serve) {
		for line := range strings.Lines(p.out.String()) {
			if !strings.Contains(line, `msg="reconcile pass"`) {
				continue
			}
			for _, f := range strings.Fields(line) {
				if k, v, ok := strings.Cut(f, "="); ok && (k == "pushed" || k == "deleted" || k == "failed") {
					n, _ := strconv.Atoi(v)
					repaired[k] += n
				}
			}
		}
	}
	t.Logf("the reconcile passes of the %d serve processes logged %v", len(serves)+1, repaired)
	// An unanswered create is live with its keys or gone; the checks above
	// hold either way. Say which.
	var list accountListReply
	e.call("prov.account.list", map[string]int{"limit": 100000}, &list)
	kept, lost := 0, 0
	for _, c := range load {
		for _, name := range c.lost {
			lost++
			if slices.ContainsFunc(list.Accounts, func(a wireAccount) bool { return a.Name == name }) {
				kept++
			}
		}
	}
	t.Logf("of %d unanswered creates, %d are live accounts, %d are gone", lost, kept, lost-kept)
	rep := e.reconcile()
	t.Logf("prov.reconcile: %+v", rep)
	if rep.Pushed != 0 || rep.Failed != 0 || len(rep.Orphans) != 0 || rep.Up != len(e.cl.nodes) {
		t.Fatalf("prov.reconcile after the servers were in line: %+v; want every server up, nothing pushed, failed or orphaned", rep)
	}
}

// driftProblems compares the store, the servers and what the load clients
// were told, and describes each disagreement.
func (e *driftEnv) driftProblems(load []*loadClient) []string {
	t := e.t
	t.Helper()
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	n := len(e.cl.nodes)

	managed := map[string]string{} // pub -> name
	for offset := 0; ; {
		var page accountListReply
		e.call("prov.account.list", map[string]int{"offset": offset}, &page)
		for _, a := range page.Accounts {
			managed[a.PublicKey] = a.Name
		}
		if page.NextOffset == 0 {
			break
		}
		offset = page.NextOffset
	}
	storeJWTs := map[string]string{}
	for pub := range managed {
		token := e.storeJWT(pub)
		storeJWTs[pub] = token
		copies := e.cl.lookupAll(pub)
		same := len(copies) == n
		for _, c := range copies {
			same = same && c == token
		}
		if !same {
			add("account %s (%s): the servers hold %v, the store %v", managed[pub], pub, describeJWTs(copies), describeJWTs([]string{token}))
		}
	}
	oc, err := jwt.DecodeOperatorClaims(e.deployJWT("operator.jwt"))
	if err != nil {
		t.Fatal(err)
	}
	system := map[string]bool{oc.SystemAccount: true, claimsOf(t, e.deployJWT("service-account.jwt")).Subject: true}
	lists := e.cl.listAll()
	if len(lists) != n {
		add("only %d of %d servers answered LIST", len(lists), n)
	}
	for srv, accs := range lists {
		for _, pub := range accs {
			if managed[pub] == "" && !system[pub] {
				add("server %s holds %s, which account.list does not list (a delete left unfinished, or an account the store lost)", srv, pub)
			}
		}
	}

	for _, c := range load {
		for _, a := range c.accounts {
			switch {
			case a.deleted == outcomeAcked:
				if _, ok := managed[a.pub]; ok {
					add("account %s (%s): deleted (acknowledged) but listed by the service", a.name, a.pub)
				}
				if e.storeJWT(a.pub) != "" {
					add("account %s (%s): deleted (acknowledged) but account.get answers", a.name, a.pub)
				}
				for srv, accs := range lists {
					if slices.Contains(accs, a.pub) {
						add("account %s (%s): deleted (acknowledged) but server %s lists it", a.name, a.pub, srv)
					}
				}
				continue
			case a.deleted == outcomeUnknown:
				continue // either way; the comparisons above cover it
			}
			if managed[a.pub] != a.name {
				add("account %s (%s): created (acknowledged) but not managed", a.name, a.pub)
				continue
			}
			desc := claimsOf(t, storeJWTs[a.pub]).Description
			if !slices.Contains(a.descs, desc) {
				add("account %s: description %q, want one of %q", a.name, desc, a.descs)
			}
			for _, u := range a.users {
				for _, nd := range e.cl.nodes {
					err := connectUser(nd.url, u.jwt, u.seed)
					switch {
					case u.revoked == outcomeAcked && !userRefused(err):
						add("user %s of %s: revoked (acknowledged) but %s: %v", u.pub, a.name, nd.name, err)
					case u.revoked == outcomeNone && err != nil:
						add("user %s of %s: issued (acknowledged), never revoked, but %s refuses it: %v", u.pub, a.name, nd.name, err)
					}
				}
			}
		}
	}
	return problems
}

// deployJWT reads a JWT file of the deployment (init writes them decorated).
func (e *driftEnv) deployJWT(name string) string {
	e.t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.d.dir, name))
	if err != nil {
		e.t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		e.t.Fatalf("%s: %v", name, err)
	}
	return token
}

// waitStoreWrite waits until a file in dir is written (its modification
// time or size changes), polling every 200µs, and reports whether one was
// within the given time.
func waitStoreWrite(dir string, within time.Duration) bool {
	type stamp struct {
		mod  time.Time
		size int64
	}
	look := func() map[string]stamp {
		out := map[string]stamp{}
		ents, _ := os.ReadDir(dir)
		for _, en := range ents {
			if fi, err := en.Info(); err == nil && fi.Mode().IsRegular() {
				out[en.Name()] = stamp{fi.ModTime(), fi.Size()}
			}
		}
		return out
	}
	before := look()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Microsecond)
		for name, st := range look() {
			if b, ok := before[name]; !ok || !b.mod.Equal(st.mod) || b.size != st.size {
				return true
			}
		}
	}
	return false
}

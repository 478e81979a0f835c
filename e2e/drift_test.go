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
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// killed reports whether a process ended by SIGKILL.
func killed(p *proc) bool {
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
	nc, err := nats.Connect(url, nats.UserJWTAndSeed(userJWT, seed),
		nats.NoReconnect(), nats.Timeout(2*time.Second), nats.Name("e2e-user"))
	if err != nil {
		return err
	}
	nc.Close()
	return nil
}

// refused tells a server's refusal of a user (unknown or disabled
// account, revoked or expired user) from a failure to reach the server.
func refused(err error) bool {
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
	if !killed(serve) || !strings.Contains(serve.out.String(), "fault point before-push:kill:acme reached") {
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
		if refused(err) {
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
	if err := connectUser(url, alice.User.JWT, alice.User.Seed); !refused(err) {
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
	if n := stored(v1.Resolver); n != 2 {
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

	e.cl.start(1)
	restarted := time.Now()
	e.cl.waitFormed(10 * time.Second)
	first := e.cl.lookupAll(pub)
	slices.Sort(first)
	want := []string{v1.Account.JWT, v2.Account.JWT}
	slices.Sort(want)
	if !slices.Equal(first, want) {
		t.Fatalf("right after %s restarted the servers hold %v; want the first version (its old disk) and the second", b.name, describeJWTs(first))
	}
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

// stored counts the servers that stored a push.
func stored(rs []wireServerReply) int {
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
			a.err = connectUser(url, userJWT, seed)
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
		if a.err == nil || refused(a.err) {
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
	if !strings.Contains(serve.out.String(), "account deleted from every known server") {
		t.Errorf("the service did not log the finished delete:\n%s", serve.out.String())
	}
	if rep := e.reconcile(); rep.Servers != 2 || rep.Up != 2 || rep.Pushed != 0 || rep.Failed != 0 || len(rep.Orphans) != 0 {
		t.Errorf("prov.reconcile after all: %+v; want 2 servers up, nothing pushed, failed or orphaned", rep)
	}
}

// Package e2e runs the provisioner the way a deployment does: the built
// binary, the real nats-server binary started from the config that
// `provisioner init` writes, and the real nats CLI as the client. Nothing
// is embedded or mocked.
//
// The tools must be installed:
//
//	go install github.com/nats-io/nats-server/v2@v2.15.2
//	go install github.com/nats-io/natscli/nats@v0.5.0
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

	"github.com/natsprov/provisioner/provtest"
)

// buildDir holds the provisioner binary, built once for the package.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// provisionerBinary builds ./cmd/provisioner from the module root once.
func provisionerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "provisioner-e2e-bin-")
		if buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "provisioner")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/provisioner")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/provisioner: %v\n%s", err, out)
			return
		}
		buildBin = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// proc is a long-running subprocess.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *provtest.SyncBuffer
	done chan struct{}
	err  error // valid once done is closed
}

// start starts a subprocess that is killed when the test ends, and whose
// output is logged if the test failed.
func start(t *testing.T, ctx context.Context, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &provtest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) kill() {
	if !p.exited() {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and waits up to d for the process to exit; it returns
// the exit error, or an error if the process is still running.
func (p *proc) stop(d time.Duration) error {
	if p.exited() {
		return fmt.Errorf("%s had exited already: %v", p.name, p.err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.name, d)
	}
}

// deployment is a deployment written by `provisioner init` with its
// nats-server and `provisioner serve` running as subprocesses.
type deployment struct {
	t           *testing.T
	ctx         context.Context
	env         []string
	provisioner string
	natsServer  string
	natsCLI     string
	dir         string // the deploy dir
	port        int
	url         string
	server      *proc
	serve       *proc
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	return newDeploymentWith(t, "file")
}

// newDeploymentWith is newDeployment with the store init is given.
func newDeploymentWith(t *testing.T, store string) *deployment {
	t.Helper()
	d := &deployment{t: t}
	d.natsServer = provtest.Tool(t, "nats-server")
	d.natsCLI = provtest.Tool(t, "nats")
	d.provisioner = provisionerBinary(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	d.ctx = ctx

	tmp := t.TempDir()
	// The nats CLI must not pick up a context or credentials of the machine.
	cfgHome := filepath.Join(tmp, "xdg")
	if err := os.Mkdir(cfgHome, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env, "XDG_CONFIG_HOME="+cfgHome)

	d.dir = filepath.Join(tmp, "deploy")
	d.port = provtest.FreePort(t)
	d.url = fmt.Sprintf("nats://127.0.0.1:%d", d.port)
	out, err := d.run(30*time.Second, d.provisioner, "init", "--dir", d.dir, "--port", strconv.Itoa(d.port), "--store", store)
	if err != nil {
		t.Fatalf("provisioner init: %v\n%s", err, out)
	}
	for _, f := range []string{"nats-server.conf", "config.json", "admin.creds", "provisioner.creds"} {
		if _, err := os.Stat(filepath.Join(d.dir, f)); err != nil {
			t.Fatalf("provisioner init did not write %s: %v\n%s", f, err, out)
		}
	}
	return d
}

// run runs a command to completion and returns its combined output.
func (d *deployment) run(timeout time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(d.ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = d.env
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: timed out after %s (%v)", filepath.Base(bin), strings.Join(args, " "), timeout, err)
	}
	return string(out), err
}

// startServer starts nats-server from the generated config and waits until
// its port accepts connections.
func (d *deployment) startServer() {
	t := d.t
	t.Helper()
	d.server = start(t, d.ctx, "nats-server", d.env, d.natsServer, "-c", filepath.Join(d.dir, "nats-server.conf"))
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if d.server.exited() {
			t.Fatalf("nats-server exited: %v\n%s", d.server.err, d.server.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not accept connections on %s within 10s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startServe starts `provisioner serve` and waits until it answers.
func (d *deployment) startServe() {
	t := d.t
	t.Helper()
	d.serve = start(t, d.ctx, "provisioner serve", d.env, d.provisioner, "serve", "--config", filepath.Join(d.dir, "config.json"))
	d.waitAnswering(10*time.Second, d.serve)
}

// waitAnswering polls prov.account.list with the nats CLI until the service
// answers it without an error.
func (d *deployment) waitAnswering(within time.Duration, serve *proc) {
	t := d.t
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		out, err := d.natsAdmin(5*time.Second, "--timeout", "1s", "request", "--raw", "prov.account.list", "{}")
		if err == nil {
			var rep map[string]any
			if json.Unmarshal([]byte(strings.TrimSpace(out)), &rep) == nil && rep["error"] == nil && rep["accounts"] != nil {
				return
			}
		}
		last = fmt.Sprintf("%v: %s", err, out)
		if serve.exited() {
			t.Fatalf("provisioner serve exited: %v\n%s", serve.err, serve.out.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not answer prov.account.list within %s; last try: %s", within, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// nats runs the nats CLI against the deployment's server with a creds file.
func (d *deployment) nats(timeout time.Duration, creds string, args ...string) (string, error) {
	return d.run(timeout, d.natsCLI, append([]string{"--server", d.url, "--creds", creds}, args...)...)
}

func (d *deployment) natsAdmin(timeout time.Duration, args ...string) (string, error) {
	return d.nats(timeout, filepath.Join(d.dir, "admin.creds"), append([]string{"--inbox-prefix", "_INBOX_admin"}, args...)...)
}

// request sends a provisioning request with the admin creds and returns
// the decoded reply, failing the test on an error reply.
func (d *deployment) request(subject, body string) map[string]any {
	t := d.t
	t.Helper()
	out, err := d.natsAdmin(20*time.Second, "--timeout", "15s", "request", "--raw", subject, body)
	if err != nil {
		t.Fatalf("nats request %s %s: %v\n%s", subject, body, err, out)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rep); err != nil {
		t.Fatalf("nats request %s: the reply is not a JSON object: %v\n%s", subject, err, out)
	}
	if e, ok := rep["error"]; ok {
		t.Fatalf("nats request %s %s: error reply: %v", subject, body, e)
	}
	return rep
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	d.startServer()
	d.startServe()

	// Discovery: the micro service and its thirteen endpoints.
	out, err := d.natsAdmin(10*time.Second, "micro", "ls", "--json")
	if err != nil {
		t.Fatalf("nats micro ls: %v\n%s", err, out)
	}
	var services []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &services); err != nil {
		t.Fatalf("nats micro ls --json: %v\n%s", err, out)
	}
	if !slices.ContainsFunc(services, func(s struct {
		Name string `json:"name"`
	}) bool {
		return s.Name == "provisioner"
	}) {
		t.Fatalf("nats micro ls does not list provisioner:\n%s", out)
	}
	out, err = d.natsAdmin(10*time.Second, "micro", "info", "provisioner", "--json")
	if err != nil {
		t.Fatalf("nats micro info provisioner: %v\n%s", err, out)
	}
	var info struct {
		Info struct {
			Name      string `json:"name"`
			Endpoints []struct {
				Name    string `json:"name"`
				Subject string `json:"subject"`
			} `json:"endpoints"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("nats micro info --json: %v\n%s", err, out)
	}
	var subjects []string
	for _, e := range info.Info.Endpoints {
		subjects = append(subjects, e.Subject)
	}
	slices.Sort(subjects)
	want := []string{
		"prov.account.create", "prov.account.delete", "prov.account.get", "prov.account.list",
		"prov.account.rotate", "prov.account.update", "prov.audit", "prov.operator.rotate", "prov.reconcile",
		"prov.status", "prov.user.create", "prov.user.list", "prov.user.revoke",
	}
	if !slices.Equal(subjects, want) {
		t.Fatalf("nats micro info provisioner: endpoint subjects %v, want %v", subjects, want)
	}

	// An account and a user in it.
	acct := d.request("prov.account.create", `{"name":"e2e"}`)
	acctPub, _ := acct["account"].(map[string]any)["public_key"].(string)
	if !strings.HasPrefix(acctPub, "A") {
		t.Fatalf("account.create reply has no account public key: %v", acct)
	}
	user := d.request("prov.user.create", `{"account":"e2e","name":"alice"}`)
	u, _ := user["user"].(map[string]any)
	creds, _ := u["creds"].(string)
	if !strings.Contains(creds, "BEGIN NATS USER JWT") || !strings.Contains(creds, "BEGIN USER NKEY SEED") {
		t.Fatalf("user.create reply has no creds: %v", user)
	}
	userCreds := filepath.Join(t.TempDir(), "alice.creds")
	if err := os.WriteFile(userCreds, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}

	// The user can connect and publish.
	if out, err := d.nats(10*time.Second, userCreds, "pub", "some.subject", "hi"); err != nil {
		t.Fatalf("nats pub with the new user's creds: %v\n%s", err, out)
	}

	// After the revocation it cannot.
	rev := d.request("prov.user.revoke", `{"account":"e2e","user":"alice"}`)
	if rev["revoked"] != u["public_key"] {
		t.Fatalf("user.revoke revoked %v, want %v", rev["revoked"], u["public_key"])
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := d.nats(10*time.Second, userCreds, "pub", "some.subject", "hi")
		if err != nil {
			if !strings.Contains(strings.ToLower(out), "authorization violation") {
				t.Fatalf("nats pub with revoked creds failed, but not with an authorization violation: %v\n%s", err, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats pub with revoked creds still succeeds 5s after user.revoke:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The account goes away.
	del := d.request("prov.account.delete", `{"account":"e2e"}`)
	if del["deleted"] != acctPub || del["phase"] != "deleted" {
		t.Fatalf("account.delete deleted %v, phase %v; want %v, deleted", del["deleted"], del["phase"], acctPub)
	}
	list := d.request("prov.account.list", `{}`)
	if accts, _ := list["accounts"].([]any); len(accts) != 0 {
		t.Fatalf("account.list after the delete: %v", list)
	}
	out, err = d.natsAdmin(10*time.Second, "--timeout", "5s", "request", "--raw", "prov.account.get", `{"account":"e2e"}`)
	if err != nil || !strings.Contains(out, `"code":404`) {
		t.Fatalf("account.get of the deleted account: want a 404 error reply, got %v: %s", err, out)
	}

	// Still discoverable.
	out, err = d.natsAdmin(10*time.Second, "micro", "ls")
	if err != nil || !strings.Contains(out, "provisioner") {
		t.Fatalf("nats micro ls does not list provisioner: %v\n%s", err, out)
	}

	// SIGTERM stops the service cleanly.
	if err := d.serve.stop(5 * time.Second); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("provisioner serve exited with %v after SIGTERM, want 0\n%s", ee, d.serve.out.String())
		}
		t.Fatal(err)
	}
	if !strings.Contains(d.serve.out.String(), "provisioner stopping") {
		t.Errorf("provisioner serve did not log its stop:\n%s", d.serve.out.String())
	}
}

// TestServerRestart stops nats-server under a running provisioner and
// starts it again on the same port: the service reconnects and answers
// again, and can still push to the resolver.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	d.startServer()
	d.startServe()
	d.request("prov.account.create", `{"name":"before"}`)

	if err := d.server.stop(10 * time.Second); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("stop nats-server: %v", err)
		}
	}
	// The service keeps running without a server.
	time.Sleep(500 * time.Millisecond)
	if d.serve.exited() {
		t.Fatalf("provisioner serve exited when nats-server went away: %v\n%s", d.serve.err, d.serve.out.String())
	}

	d.startServer()
	d.waitAnswering(10*time.Second, d.serve)

	// The account made before the restart is still there, and pushes work.
	list := d.request("prov.account.list", `{}`)
	accts, _ := list["accounts"].([]any)
	if len(accts) != 1 {
		t.Fatalf("account.list after the restart: want the one account made before, got %v", list)
	}
	began := time.Now()
	after := d.request("prov.account.create", `{"name":"after"}`)
	took := time.Since(began)
	t.Logf("account.create after the restart took %s; resolver: %v", took.Round(time.Millisecond), after["resolver"])
	// The restarted server has a new server ID; the push must not wait the
	// resolver timeout (5s) for the old one.
	replies, _ := after["resolver"].([]any)
	if len(replies) != 1 {
		t.Errorf("account.create after the restart: want one resolver reply, got %v", after["resolver"])
	}
	for _, r := range replies {
		if code, _ := r.(map[string]any)["code"].(float64); code != 200 {
			t.Errorf("account.create after the restart: resolver reply %v, want code 200", r)
		}
	}
	if took > 4*time.Second {
		t.Errorf("account.create after the restart took %s: it waited for the server's old ID", took)
	}
	if !strings.Contains(d.serve.out.String(), "reconnected to NATS") {
		t.Errorf("provisioner serve did not log the reconnect:\n%s", d.serve.out.String())
	}
	if err := d.serve.stop(5 * time.Second); err != nil {
		t.Fatalf("provisioner serve after SIGTERM: %v\n%s", err, d.serve.out.String())
	}
}

package resolver_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// silentCluster is node-a, embedded, which the client connects to, and
// node-b, a nats-server process routed to it that the test can kill -9
// (no SHUTDOWN event) or pause (SIGSTOP): a server gone, or slow, without
// a word.
type silentCluster struct {
	a  *node
	b  *os.Process
	c  *resolver.Client
	op *provision.Operator
}

func startSilentCluster(t *testing.T) *silentCluster {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	a := startCluster(t, res, 1)[0]
	b := startProcessNode(t, res, a)
	const prefix = bootstrap.ProvisionerInboxPrefix
	nc, err := nats.Connect(a.srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(prefix), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	waitFor(t, 15*time.Second, "both servers answer the ping", func() bool { return pingCount(t, nc) == 2 })
	c := newClient(t, nc, resolver.Options{Timeout: resolver.DefaultTimeout, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	sc := &silentCluster{a: a, b: b, c: c, op: operator(t, res.Dir)}
	// Both answer a push: each is a server with a resolver.
	if r := sc.push(t, "first"); r.Stored() != 2 {
		t.Fatalf("first push: %+v, want both servers to store it", r)
	}
	return sc
}

// startProcessNode starts node-b, a nats-server process of the deployment
// made by res routed to a, which the test can kill -9 (no SHUTDOWN event)
// or pause (SIGSTOP); it is killed when the test ends.
func startProcessNode(t *testing.T, res *bootstrap.Result, a *node) *os.Process {
	t.Helper()
	sysJWT, err := os.ReadFile(filepath.Join(res.Dir, bootstrap.SystemAccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	sysToken, err := jwt.ParseDecoratedJWT(sysJWT)
	if err != nil {
		t.Fatal(err)
	}
	conf := bootstrap.ServerConf{
		Listen:        "127.0.0.1:-1",
		ServerName:    "node-b",
		OperatorJWT:   filepath.Join(res.Dir, bootstrap.OperatorJWTFile),
		SystemAccount: res.SystemAccount,
		SystemJWT:     sysToken,
		ResolverDir:   filepath.Join(t.TempDir(), "jwt"),
		AllowDelete:   true,
		Limit:         1000,
	}
	text := string(conf.Render()) + fmt.Sprintf("\ncluster {\n  name: \"test-cluster\"\n  listen: \"127.0.0.1:-1\"\n  routes: [%q]\n}\n", "nats-route://"+a.srv.ClusterAddr().String())
	confFile := filepath.Join(t.TempDir(), "node-b.conf")
	if err := os.WriteFile(confFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(provtest.Tool(t, "nats-server"), "-c", confFile)
	out, err := os.Create(filepath.Join(t.TempDir(), "node-b.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process
}

func (sc *silentCluster) push(t *testing.T, name string) provision.PushResult {
	t.Helper()
	_, token := newAccount(t, name, sc.op.Signer)
	r, err := sc.c.Update(context.Background(), token)
	if err != nil {
		t.Fatalf("push %s: %v", name, err)
	}
	return r
}

// TestPushAfterSilentDeathNotWaitingTimeout: node-b is killed (kill -9: no
// SHUTDOWN event) and nothing else tells the client. The next push hears
// node-a at once and then waited the whole timeout (5 s) for node-b before
// a ping was even asked for; it asks for one while it still waits, so the
// wait is about the ping's.
func TestPushAfterSilentDeathNotWaitingTimeout(t *testing.T) {
	t.Parallel()
	sc := startSilentCluster(t)
	if err := sc.b.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := sc.push(t, "after-kill")
	took := time.Since(start)
	if r.Stored() != 1 {
		t.Errorf("push after the kill: %+v, want node-a to store it", r)
	}
	if took > 4*time.Second {
		t.Errorf("push after node-b's kill -9 took %s: it waited out most of the %s timeout for a server gone without a word, instead of asking for a ping while waiting", took.Round(time.Millisecond), resolver.DefaultTimeout)
	}
	if s, ok := findServer(sc.c.Servers(), "node-b"); !ok || s.Up {
		t.Errorf("node-b after the push: %+v (known %v), want down", s, ok)
	}
}

// TestSlowServerNotMarkedDownByEarlyPing: node-b pauses for 1.5 s (a busy
// machine) while a push waits for it. The ping asked for during the wait
// must not take it for gone: its answer to the push counts, and it stays
// up.
func TestSlowServerNotMarkedDownByEarlyPing(t *testing.T) {
	t.Parallel()
	sc := startSilentCluster(t)
	if err := sc.b.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume := time.AfterFunc(1500*time.Millisecond, func() { _ = sc.b.Signal(syscall.SIGCONT) })
	defer resume.Stop()
	r := sc.push(t, "slow")
	if r.Stored() != 2 {
		t.Errorf("push while node-b paused 1.5 s: %+v, want both servers to store it", r)
	}
	time.Sleep(2 * time.Second) // any ping the push asked for is done
	if s, ok := findServer(sc.c.Servers(), "node-b"); !ok || !s.Up {
		t.Errorf("node-b after a 1.5 s pause: %+v (known %v), want up", s, ok)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bench"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// startDevRun runs `provisioner dev` in the background until the test
// ends and returns its output once it is up.
func startDevRun(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr provtest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"dev"}, args...), &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev exited with %v; stderr:\n%s", err, stderr.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "Ctrl-C stops.") {
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("dev exited: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev did not come up; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return stdout.String()
}

// toolEnv is the environment of pasted lines: nats and nats-server found
// on PATH, and a fresh HOME so that no nats context of the machine counts.
func toolEnv(t *testing.T) []string {
	t.Helper()
	path := filepath.Dir(provtest.Tool(t, "nats")) + string(os.PathListSeparator) +
		filepath.Dir(provtest.Tool(t, "nats-server")) + string(os.PathListSeparator) + os.Getenv("PATH")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "NATS_") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+path, "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
}

// runPasted runs a line in a shell as a user pastes it, in dir.
func runPasted(t *testing.T, dir, line string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	cmd.Env = toolEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed line failed: %v\n%s\n%s", err, line, out)
	}
	return string(out)
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// copyBinary builds this command once per test run and copies it to dst.
func copyBinary(t *testing.T, dst string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "provisioner-cmd-test-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "provisioner")
		if out, err := exec.Command("go", "build", "-o", buildBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// A hard link: a copy written here was open for writing while a
	// parallel test forked (its child holds the descriptor until its own
	// exec), and running it failed with "text file busy" (ETXTBSY). The
	// build's file was written by go build, another process, long done.
	if err := os.Link(buildBin, dst); err == nil {
		return
	}
	data, err := os.ReadFile(buildBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestMain keeps the connection settings of the machine running the tests
// out of them (every test says where it connects), and removes the binary
// built for them.
func TestMain(m *testing.M) {
	for _, v := range []string{"NATS_URL", "NATS_CREDS", "NATS_CONTEXT"} {
		os.Unsetenv(v)
	}
	// Nor the natscli context selected on it (nats/context.txt).
	cfg, err := os.MkdirTemp("", "provisioner-cmd-test-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", cfg)
	code := m.Run()
	os.RemoveAll(cfg)
	if buildBin != "" {
		os.RemoveAll(filepath.Dir(buildBin))
	}
	os.Exit(code)
}

// A dev killed with SIGKILL leaves its directory usable: the next dev
// takes the lock it held and finds the account made before.
func TestDevAfterKill(t *testing.T) {
	t.Parallel()
	provtest.Tool(t, "nats")
	work := t.TempDir()
	copyBinary(t, filepath.Join(work, "provisioner"))
	dir := filepath.Join(work, "dev")
	port := provtest.FreePort(t)
	cmd := exec.Command(filepath.Join(work, "provisioner"), "dev", "--dir", dir, "--port", strconv.Itoa(port), "--store", bootstrap.StoreFile)
	var out provtest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops.") {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not come up:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if name := accountName(t, runPasted(t, work, lineWith(t, out.String(), "request prov.account.create"))); name != "demo" {
		t.Fatalf("made %q", name)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done

	again := startDevRun(t, "--dir", dir, "--port", strconv.Itoa(port), "--store", bootstrap.StoreFile)
	if !strings.Contains(again, "Using the file deployment") {
		t.Errorf("the second dev says:\n%s", again)
	}
	list := runPasted(t, work, strings.Replace(lineWith(t, again, "request prov.account.create"), `prov.account.create '{"name":"demo"}'`, `prov.account.list '{}'`, 1))
	if !strings.Contains(list, `"demo"`) {
		t.Errorf("after the kill the account is gone:\n%s", list)
	}
}

// background runs a pasted line in a shell until the test ends, when it
// gets a SIGTERM.
func background(t *testing.T, dir, line string) (exited func() bool) {
	t.Helper()
	cmd := exec.Command("sh", "-c", "exec "+line)
	cmd.Dir = dir
	cmd.Env = toolEnv(t)
	var out provtest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", line, out.String())
		}
	})
	return func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
}

// lineWith returns the one output line that contains s, trimmed.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	var found []string
	for l := range strings.Lines(out) {
		if strings.Contains(l, s) {
			found = append(found, strings.TrimSpace(l))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one line with %q, got %q in:\n%s", s, found, out)
	}
	return found[0]
}

// accountName decodes the reply to an account.create that the nats CLI
// printed, and returns the account's name.
func accountName(t *testing.T, out string) string {
	t.Helper()
	start := strings.IndexByte(out, '{')
	var reply struct {
		Account struct {
			Name, PublicKey, JWT string
		} `json:"account"`
	}
	if start < 0 || json.Unmarshal([]byte(out[start:]), &reply) != nil {
		t.Fatalf("no JSON reply:\n%s", out)
	}
	if _, err := jwt.DecodeAccountClaims(reply.Account.JWT); err != nil {
		t.Errorf("reply JWT: %v", err)
	}
	return reply.Account.Name
}

// waitConnect connects once the server accepts connections.
func waitConnect(t *testing.T, url, creds string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := nats.Connect(url, append([]nats.Option{nats.UserCredentials(creds)}, opts...)...)
		if err == nil {
			t.Cleanup(nc.Close)
			return nc
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect to %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDevPrintsAWorkingRequestLine runs `provisioner dev` and pastes the
// lines it prints into a shell, as a newcomer would.
func TestDevPrintsAWorkingRequestLine(t *testing.T) {
	t.Parallel()
	for _, store := range []string{bootstrap.StoreFile, bootstrap.StoreJetStream} {
		t.Run(store, func(t *testing.T) {
			provtest.Tool(t, "nats")
			dir := filepath.Join(t.TempDir(), "dev")
			port := provtest.FreePort(t)
			out := startDevRun(t, "--dir", dir, "--port", strconv.Itoa(port), "--store", store)
			line := lineWith(t, out, "request prov.account.create")
			if !strings.Contains(line, "127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(line, "--inbox-prefix "+bootstrap.AdminInboxPrefix) {
				t.Fatalf("the request line %q is not for port %d with the admin's inbox prefix", line, port)
			}
			if name := accountName(t, runPasted(t, t.TempDir(), line)); name != "demo" {
				t.Fatalf("the printed line made the account %q", name)
			}
			// natscli exits 0 on errors: check what it printed.
			info := runPasted(t, t.TempDir(), lineWith(t, out, "micro info"))
			if !strings.Contains(info, "Service Information") || !strings.Contains(info, "provisioner") {
				t.Errorf("the micro info line printed:\n%s", info)
			}
		})
	}
}

// TestDevJetStreamServer checks what dev does for the JetStream store up
// to the service: the deployment, and an embedded server with JetStream in
// which the service user can make the configured bucket, kept across
// restarts. A second start keeps the kind; asking for the other is refused
// unless with --reset.
func TestDevJetStreamServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	d, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.StoreKind() != bootstrap.StoreJetStream || d.cfg.ServiceCreds == "" || d.cfg.SealKey == "" || d.cfg.NATSURL != d.srv.URL() {
		d.Stop()
		t.Fatalf("dev's config: store %s service_creds %q seal_key %q nats_url %q", d.cfg.StoreKind(), d.cfg.ServiceCreds, d.cfg.SealKey, d.cfg.NATSURL)
	}
	if !d.srv.JetStreamEnabled() {
		t.Error("dev's server runs without JetStream")
	}
	if fi, err := os.Stat(filepath.Join(dir, bootstrap.JetStreamDir)); err != nil || !fi.IsDir() {
		t.Errorf("JetStream does not keep its data in %s: %v", filepath.Join(dir, bootstrap.JetStreamDir), err)
	}
	nc := waitConnect(t, d.srv.URL(), d.cfg.ServiceCreds, nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: d.cfg.KVBucket, Replicas: d.cfg.Replicas(1)})
	if err != nil {
		t.Fatalf("the service user cannot make the bucket %s: %v", d.cfg.KVBucket, err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	// A second dev on the same directory while this one runs: refused,
	// before it starts a second server on the same JetStream files.
	if _, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, &out); err == nil || !strings.Contains(err.Error(), "another provisioner dev runs") {
		t.Fatalf("a second dev on %s: %v", dir, err)
	}
	nc.Close()
	d.Stop()

	// Again: the same deployment, the bucket still there.
	out.Reset()
	d, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Using the jetstream deployment") {
		t.Errorf("the second start says:\n%s", out.String())
	}
	nc = waitConnect(t, d.srv.URL(), d.cfg.ServiceCreds, nats.CustomInboxPrefix(bootstrap.ServiceInboxPrefix))
	if js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	if kv, err := js.KeyValue(ctx, d.cfg.KVBucket); err != nil {
		t.Errorf("the bucket is gone after a restart: %v", err)
	} else if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Errorf("the key is gone after a restart: %v", err)
	}
	nc.Close()
	d.Stop()

	// The other kind, asked for: refused.
	_, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile, storeSet: true}, &out)
	if err == nil || !strings.Contains(err.Error(), "--reset") || !strings.Contains(err.Error(), "jetstream") {
		t.Fatalf("dev --store file on a jetstream dir: %v", err)
	}
	// With --reset: a file deployment.
	d, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile, storeSet: true, reset: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	if d.cfg.StoreKind() != bootstrap.StoreFile {
		t.Errorf("after --reset --store file the store is %s", d.cfg.StoreKind())
	}
}

// TestInitLinesRunAsPasted builds the binary, runs `./provisioner init` as
// the README says, and runs the lines it prints in a shell: nats-server,
// then ./provisioner serve, then the nats request.
func TestInitLinesRunAsPasted(t *testing.T) {
	t.Parallel()
	provtest.Tool(t, "nats")
	provtest.Tool(t, "nats-server")
	work := t.TempDir()
	copyBinary(t, filepath.Join(work, "provisioner"))
	for _, store := range []string{bootstrap.StoreFile, bootstrap.StoreJetStream} {
		t.Run(store, func(t *testing.T) {
			port := provtest.FreePort(t)
			deploy := "deploy-" + store
			init := exec.Command("./provisioner", "init", "--dir", deploy, "--port", strconv.Itoa(port), "--store", store)
			init.Dir = work
			out, err := init.CombinedOutput()
			if err != nil {
				t.Fatalf("./provisioner init: %v\n%s", err, out)
			}
			server := lineWith(t, string(out), "nats-server -c")
			serve := lineWith(t, string(out), "serve --config")
			try := lineWith(t, string(out), "request prov.account.create")
			if !strings.HasPrefix(serve, "./provisioner serve") {
				t.Errorf("the serve line %q does not run ./provisioner, the binary that was run", serve)
			}
			if !strings.Contains(try, "--inbox-prefix "+bootstrap.AdminInboxPrefix) {
				t.Errorf("the request line %q does not set the admin's inbox prefix", try)
			}

			background(t, work, server)
			url := fmt.Sprintf("nats://127.0.0.1:%d", port)
			admin := waitConnect(t, url, filepath.Join(work, deploy, bootstrap.AdminCredsFile), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
			serveExited := background(t, work, serve)
			deadline := time.Now().Add(15 * time.Second)
			for {
				m, err := admin.Request("prov.account.list", []byte("{}"), time.Second)
				if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
					break
				}
				if serveExited() || time.Now().After(deadline) {
					t.Fatalf("the pasted serve line does not answer: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if name := accountName(t, runPasted(t, work, try)); name != "demo" {
				t.Fatalf("the printed line made the account %q", name)
			}
		})
	}
}

func TestInvokedAs(t *testing.T) {
	tests := []struct{ give, want string }{
		{"./provisioner", "./provisioner"},
		{"provisioner", "provisioner"},
		{"/usr/local/bin/provisioner", "/usr/local/bin/provisioner"},
		{"bin/provisioner", "bin/provisioner"},
		{"/tmp/go-build1234/b001/exe/provisioner", "go run ./cmd/provisioner"},
		{"/root/.cache/go-build/bf/bf7487ba8a2b2789812f5d74dae9a5bd7d4e24ecc8029cbbf1606f5ab83a0ed5-d/provisioner", "go run ./cmd/provisioner"},
		{"/opt/my tools/provisioner", "'/opt/my tools/provisioner'"},
		{"", "provisioner"},
	}
	for _, tt := range tests {
		if got := invokedAs(tt.give); got != tt.want {
			t.Errorf("invokedAs(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// shellQuote's output reads back as its input in a real shell.
func TestShellQuote(t *testing.T) {
	for give, want := range map[string]string{
		"/a/b.conf":         "/a/b.conf",
		"nats://h:4222":     "nats://h:4222",
		"/a b/c":            "'/a b/c'",
		"it's":              `'it'\''s'`,
		"$HOME":             "'$HOME'",
		"a;rm -rf /":        "'a;rm -rf /'",
		"nats://[::1]:4222": "'nats://[::1]:4222'",
	} {
		if got := shellQuote(give); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", give, got, want)
		}
		if out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(give)).Output(); err != nil || string(out) != give {
			t.Errorf("sh reads %s as %q (%v), want %q", shellQuote(give), out, err, give)
		}
	}
}

func TestInitWritesADeploymentOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"init", "--dir", dir, "--port", "14999"}, &out, &errOut); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"nats-server -c " + filepath.Join(dir, "nats-server.conf"),
		" serve --config " + filepath.Join(dir, "config.json"),
		"nats://127.0.0.1:14999",
		"--inbox-prefix _INBOX_admin",
		"(jetstream store)",
		"docker-compose.yml",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("init output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"init", "--dir", dir}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second init into the same dir: %v, want a refusal", err)
	}
	if err := run(context.Background(), []string{"init"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--dir") {
		t.Errorf("init without --dir: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := run(context.Background(), []string{"init", "--dir", other, "--store", "sql"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), `"sql"`) {
		t.Errorf("init --store sql: %v", err)
	}
	if _, err := os.Stat(other); err == nil {
		t.Errorf("the refused init made %s", other)
	}
	out.Reset()
	if err := run(context.Background(), []string{"init", "--dir", other, "--store", "file"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(file store)") || strings.Contains(out.String(), "docker-compose") {
		t.Errorf("init --store file says:\n%s", out.String())
	}
}

// A missing config says which file was tried and how to make one.
func TestServeWithoutConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nowhere", "config.json")
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"serve", "--config", path}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "provisioner init --dir") {
		t.Fatalf("serve without a config: %v", err)
	}
}

// seedShaped finds anything shaped like an nkeys seed.
var seedShaped = regexp.MustCompile(`S[ONACUPX][A-Z2-7]{56}`)

// TestServeRefusesBadStarts checks the start-up errors an operator sees.
func TestServeRefusesBadStarts(t *testing.T) {
	dir := t.TempDir()
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, cfg map[string]any) string {
		b, _ := json.Marshal(cfg)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	base := func() map[string]any {
		return map[string]any{
			"nats_url": res.URL, "nats_creds": "provisioner.creds", "operator_jwt": "operator.jwt",
			"operator_signing_key": "operator-signing.nk", "store_dir": "store",
		}
	}
	identity := base()
	identity["operator_signing_key"] = bootstrap.OperatorIdentityKeyFile
	unknown := base()
	unknown["colour"] = "red"
	missing := base()
	delete(missing, "store_dir")
	otherKey, _ := nkeys.CreateOperator()
	seed, _ := otherKey.Seed()
	os.WriteFile(filepath.Join(dir, "other.nk"), seed, 0o600)
	unlisted := base()
	unlisted["operator_signing_key"] = "other.nk"
	otherPub, _ := otherKey.PublicKey()

	tests := []struct {
		name string
		cfg  map[string]any
		want []string
	}{
		{"identity key", identity, []string{"identity key", res.Operator, "signing key"}},
		{"unlisted key", unlisted, []string{otherPub, "not a signing key", res.OperatorSigning}},
		{"unknown field", unknown, []string{"colour"}},
		{"missing store_dir, no KV fields", missing, []string{"store_dir", "service_creds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"serve", "--config", write(tt.name+".json", tt.cfg)}, &out, &errOut)
			if err == nil {
				t.Fatal("serve started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// Any seed: the identity key's case has the identity seed
			// to show, not other.nk's, which alone was looked for.
			if seedShaped.MatchString(err.Error()) {
				t.Errorf("the error shows a seed")
			}
		})
	}
}

// TestBenchRuns runs a tiny bench on each store, the JetStream one against
// the nats-server binary as a separate process, and checks that it
// measured every row against its floor; the numbers themselves are for
// people, not for this test. What it does check is what the bench
// reports about the service: concurrent revokes of one account are
// combined into fewer versions, and each revoke+update floor pushes a JWT
// of the size the service's account has.
func TestBenchRuns(t *testing.T) {
	t.Parallel()
	const revocations = 50
	tests := []struct {
		name     string
		args     []string
		store    string
		external bool
	}{
		{"file store, embedded server", nil, bench.StoreFile, false},
		{"jetstream store, nats-server process", []string{"--store", "jetstream", "--server-binary", provtest.Tool(t, "nats-server")}, bench.StoreJetStream, true},
		{"jetstream store, cluster of three nats-server processes", []string{"--store", "jetstream", "--cluster", "--server-binary", provtest.Tool(t, "nats-server")}, bench.StoreJetStream, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			dir := filepath.Join(t.TempDir(), "bench")
			args := append([]string{"bench", "-n", "40", "-c", "4", "--c-high", "8", "-rounds", "2", "--versions", "1",
				"--revocations", strconv.Itoa(revocations), "--json", "--dir", dir}, tt.args...)
			if err := run(context.Background(), args, &out, &errOut); err != nil {
				t.Fatalf("bench: %v\n%s", err, errOut.String())
			}
			var rep bench.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("bench --json printed no report: %v\n%s", err, out.String())
			}
			if rep.Store != tt.store || rep.External != tt.external {
				t.Errorf("report of store %q external %v, want %q %v", rep.Store, rep.External, tt.store, tt.external)
			}
			// Two concurrencies of account.create and of one-account
			// revokes, each with its floor where it has one; user.create
			// and its floor; two revoke+update with floors; delete; and
			// with the JetStream store the two write floors.
			want := 13
			if tt.store == bench.StoreJetStream {
				want += 2
			}
			if len(rep.Results) != want {
				t.Fatalf("%d results, want %d: %s", len(rep.Results), want, out.String())
			}
			byName := map[string]bench.Result{}
			for _, r := range rep.Results {
				byName[r.Name] = r
				if r.Ops == 0 || r.Errors != 0 || r.PerSecond <= 0 || r.P50 <= 0 {
					t.Errorf("result %+v", r)
				}
			}
			floors, targets, oneAccount := 0, 0, 0
			for _, r := range rep.Results {
				if r.Floor != "" {
					floors++
					if _, ok := byName[r.Floor]; !ok || r.Ratio <= 0 {
						t.Errorf("%s: floor %q (in the report: %v), ratio %.2f", r.Name, r.Floor, ok, r.Ratio)
					}
				}
				if r.Pass != nil {
					targets++
				}
				if r.Versions > 0 {
					oneAccount++
				}
				if strings.HasPrefix(r.Name, "user.revoke") && r.C == 8 && r.Versions >= r.Ops {
					t.Errorf("%s: %d revokes made %d versions; concurrent changes of one account should be combined", r.Name, r.Ops, r.Versions)
				}
			}
			if floors != 5 || targets != 3 || oneAccount != 4 {
				t.Errorf("%d results against a floor (want 5), %d with a target (want 3), %d on one account with versions counted (want 4)", floors, targets, oneAccount)
			}
			svc := byName[fmt.Sprintf("revoke+update via service, one account, from %d revocations c=4", revocations)]
			floor := byName[svc.Floor]
			if svc.JWTBytes < revocations*80 || floor.JWTBytes < svc.JWTBytes*9/10 || floor.JWTBytes > svc.JWTBytes*11/10 {
				t.Errorf("JWT sizes with %d revocations: service %d bytes, floor %d; want the same size, at least %d", revocations, svc.JWTBytes, floor.JWTBytes, revocations*80)
			}
			// The server's CPU time counts in clock ticks (10 ms): a row
			// of a few dozen cheap operations can read 0 (the first row
			// did once in CI), so some row must show it, not each.
			if tt.external {
				measured := false
				for _, r := range rep.Results {
					measured = measured || (r.ServerCPUPerOp > 0 && r.CPUPerOp > 0)
				}
				if !measured {
					t.Errorf("no row has CPU per operation of the two processes: %+v", rep.Results[0])
				}
			}
			writes := 0
			for _, r := range rep.Results {
				if strings.HasPrefix(r.Name, "JetStream write floor") {
					writes++ // measured without errors, as every row (above)
				}
			}
			if tt.store == bench.StoreJetStream && writes != 2 {
				t.Errorf("%d JetStream write floors, want 2", writes)
			}
			if slices.Contains(tt.args, "--cluster") {
				// Every node holds a replica of the bucket's stream.
				replicas, _ := filepath.Glob(filepath.Join(dir, "node*", bootstrap.JetStreamDir, "jetstream", "*", "streams", "KV_provisioner"))
				if rep.Servers != 3 || len(replicas) != 3 {
					t.Errorf("cluster run: %d servers in the report, the bucket's stream on %d nodes (%v); want 3 and 3", rep.Servers, len(replicas), replicas)
				}
			}
		})
	}
}

// TestServeWithTheWrongCreds: serve given the admin's creds (which may not
// subscribe to the service's subjects nor use its inbox) exits with an
// error naming the creds and the refused permission, instead of running
// deaf.
func TestServeWithTheWrongCreds(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	raw, _ := os.ReadFile(env.Init.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["nats_creds"] = bootstrap.AdminCredsFile
	fields["nats_url"] = env.Server.URL()
	raw, _ = json.Marshal(fields)
	path := filepath.Join(env.Dir, "wrong.json")
	os.WriteFile(path, raw, 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err := run(ctx, []string{"serve", "--config", path}, &out, &errOut)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("serve with admin.creds: %v (after %v)", err, ctx.Err())
	}
	for _, w := range []string{bootstrap.AdminCredsFile, "Permissions Violation"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error %q does not name %q", err, w)
		}
	}
}

// TestServeWaitsForTheServer: serve started before its nats-server keeps
// trying, and serves once the server appears.
func TestServeWaitsForTheServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := provtest.FreePort(t)
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Port: port, Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut provtest.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", res.Config}, io.Discard, &errOut) }()
	// Until it says it retries a second time (its retries back off from
	// 250 ms): it must not exit meanwhile, and must serve once the server
	// is there, which it can only if it kept trying.
	for waitUntil := time.Now().Add(10 * time.Second); !strings.Contains(errOut.String(), "attempt=2"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("serve exited while the server was not there: %v\n%s", err, errOut.String())
		default:
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("serve did not retry twice in 10 s:\n%s", errOut.String())
		}
	}
	select {
	case err := <-done:
		t.Fatalf("serve exited while the server was not there: %v\n%s", err, errOut.String())
	default:
	}
	if !strings.Contains(errOut.String(), "retrying") {
		t.Errorf("serve does not say it waits:\n%s", errOut.String())
	}
	srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	admin, err := nats.Connect(srv.URL(), nats.UserCredentials(res.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := admin.Request("prov.account.list", []byte(`{}`), time.Second)
		if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer once the server appeared: %v\n%s", err, errOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}
}

// TestDevStoppedWhileStarting: dev told to stop (Ctrl-C, SIGTERM) before
// its service has started stops cleanly, as serve does, instead of
// failing with the start's error.
func TestDevStoppedWhileStarting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "dev")
	var stdout, stderr bytes.Buffer
	if err := runDev(ctx, []string{"--dir", dir, "--port", strconv.Itoa(provtest.FreePort(t))}, &stdout, &stderr); err != nil {
		t.Fatalf("dev stopped before its service started: %v, want a clean stop\n%s", err, stderr.String())
	}
}

// TestDevEndsWhenAConnectionIsClosedForGood: dev waited on Ctrl-C only,
// not on the service: with a connection nats.go closed for good (here the
// provisioner user's JWT expired, as a revoked one would be) it went on
// "serving" deaf for ever, where serve stops and fails. dev must end the
// same way, naming the connection.
func TestDevEndsWhenAConnectionIsClosedForGood(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := os.ReadFile(provtest.SystemUserCreds(t, dir, res.SystemAccount, "provisioner-expiring", func(uc *jwt.UserClaims) {
		uc.Permissions = bootstrap.ProvisionerPermissions("prov")
		uc.Expires = time.Now().Add(4 * time.Second).Unix()
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(res.ProvisionerCreds, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr provtest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runDev(ctx, []string{"--dir", dir, "--port", "0"}, &stdout, &stderr)
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "closed for good") {
			t.Errorf("dev after its connection was closed for good: %v, want it named\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatalf("dev still serving 16 s after its creds expired and nats.go closed the connection for good\n%s", stdout.String())
	}
}

// TestServeRefusesStoreDirOnAKVConfig: --store-dir overrides a file
// store's store_dir (the image's /store volume). On the config of a
// JetStream deployment it switched the instance to a new, empty file store
// without a word: it served in the same queue group as the KV instances,
// answering 404 for their accounts and creating accounts no other instance
// knew. It is refused, naming the flag and the KV store, and nothing is
// made.
func TestServeRefusesStoreDirOnAKVConfig(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Port: provtest.FreePort(t)})
	if err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "store")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"serve", "--config", res.Config, "--store-dir", storeDir}, &out, &errOut)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "--store-dir") || !strings.Contains(err.Error(), "kv_bucket") {
		t.Fatalf("serve --store-dir on a JetStream config: %v (timed out: %v), want a refusal at once naming --store-dir and kv_bucket\n%s", err, ctx.Err() != nil, errOut.String())
	}
	if _, err := os.Stat(storeDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused serve made %s: %v", storeDir, err)
	}
}

// TestServeRefusesABlankStoreDirFlag: --store-dir overrides store_dir after
// the config was validated, so a blank one ("   ", a shell variable with
// spaces) was taken: serve waited for NATS and would then have made a
// directory named by the spaces in the working directory. It is refused
// like a blank store_dir in the file, naming the flag.
func TestServeRefusesABlankStoreDirFlag(t *testing.T) {
	dir := t.TempDir()
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	err = run(ctx, []string{"serve", "--config", res.Config, "--store-dir", "   "}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--store-dir") {
		t.Fatalf("serve --store-dir '   ': %v, want an error naming --store-dir", err)
	}
}

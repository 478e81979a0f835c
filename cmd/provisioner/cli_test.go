package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// cli is a deployment with the service running, and the flags that
// connect to it with the admin creds.
type cli struct {
	env  *provtest.Env
	conn []string
}

func newCLI(t *testing.T, opts bootstrap.Options) *cli {
	t.Helper()
	env := provtest.Deployment(t, opts)
	env.Start(t)
	return &cli{env: env, conn: []string{"--server", env.Server.URL(), "--creds", env.Init.AdminCreds}}
}

// run runs the command with the connection flags after its own arguments,
// as people type them.
func (c *cli) run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCmd(t, append(args, c.conn...)...)
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustRun runs a command that must succeed.
func (c *cli) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := c.run(t, args...)
	if err != nil {
		t.Fatalf("provisioner %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// decodeJSON decodes a command's --json output strictly: one JSON value
// and nothing else.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("--json printed no JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("--json printed more than one JSON value:\n%s", out)
	}
}

// wantServiceError checks that a command failed with the service's error:
// exit code 1 and the message main prints.
func wantServiceError(t *testing.T, err error, code string, mentions string) {
	t.Helper()
	var se *serviceError
	if !errors.As(err, &se) || exitCode(err) != 1 {
		t.Fatalf("got %v (exit %d), want a service error, exit 1", err, exitCode(err))
	}
	if msg := err.Error(); !strings.HasSuffix(msg, "(code "+code+")") || !strings.Contains(msg, mentions) {
		t.Errorf("message %q, want the description mentioning %q and (code %s)", msg, mentions, code)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"help", flag.ErrHelp, 0},
		{"wrapped help", errors.Join(errors.New("x"), flag.ErrHelp), 0},
		{"other", errors.New("no connection"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestReorder(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("o", "", "")
	fs.Int("conn", 0, "")
	fs.Bool("json", false, "")
	tests := []struct {
		name string
		give string
		want string
	}{
		{"flags first", "--conn 1 acme", "--conn 1 -- acme"},
		{"flags after", "acme --conn 1", "--conn 1 -- acme"},
		{"mixed", "acme --json alice -o f", "--json -o f -- acme alice"},
		{"with =", "acme --conn=1", "--conn=1 -- acme"},
		{"negative value", "acme --conn -1", "--conn -1 -- acme"},
		{"dash value", "acme -o -", "-o - -- acme"},
		{"bool does not take the next", "--json acme", "--json -- acme"},
		{"after --", "acme -- --json", "-- acme --json"},
		{"unknown flag left to Parse", "acme --nope x", "--nope -- acme x"},
		{"value flag last", "acme --conn", "--conn"},
		{"string flag last", "acme -o", "-o"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(reorder(fs, strings.Fields(tt.give)), " "); got != tt.want {
				t.Errorf("reorder(%q) = %q, want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		give    string
		size    bool
		want    int64
		wantErr bool
	}{
		{"10", false, 10, false},
		{"-1", false, -1, false},
		{"unlimited", true, -1, false},
		{"0", true, 0, false},
		{"512K", true, 512 << 10, false},
		{"1g", true, 1 << 30, false},
		{"2GiB", true, 2 << 30, false},
		{"3 MB", true, 3 << 20, false},
		{"1T", true, 1 << 40, false},
		{"1K", false, 0, true},
		{"-2", false, 0, true},
		{"ten", true, 0, true},
		{"9999999999T", true, 0, true},
		{"1.5G", true, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			got, err := parseLimit(tt.give, tt.size)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseLimit(%q, %v) = %d, %v; want %d, error %v", tt.give, tt.size, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestHelp checks that each new command explains itself on -h: a summary,
// the usage, its flags with defaults and an example, on stdout, and that
// this counts as success.
func TestHelp(t *testing.T) {
	commands := [][]string{
		{"account", "create"}, {"account", "list"}, {"account", "get"}, {"account", "update"}, {"account", "delete"},
		{"user", "create"}, {"user", "list"}, {"user", "revoke"},
	}
	for _, c := range commands {
		for _, h := range []string{"-h", "--help"} {
			t.Run(strings.Join(c, " ")+" "+h, func(t *testing.T) {
				// Positional arguments before -h do not matter.
				out, errOut, err := runCmd(t, append(c, "acme", h)...)
				if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
					t.Fatalf("got %v (exit %d), want flag.ErrHelp, exit 0", err, exitCode(err))
				}
				if errOut != "" {
					t.Errorf("help wrote to stderr: %s", errOut)
				}
				for _, want := range []string{"provisioner " + strings.Join(c, " ") + ": ", "Usage:\n  provisioner " + strings.Join(c, " "),
					"\nExample:\n  provisioner " + strings.Join(c, " "), "--server URL", "--timeout DURATION", "(default 30s)", "--prefix PREFIX", "(default prov)", "--json"} {
					if !strings.Contains(out, want) {
						t.Errorf("help lacks %q:\n%s", want, out)
					}
				}
			})
		}
	}
	for _, group := range []string{"account", "user"} {
		t.Run(group, func(t *testing.T) {
			out, _, err := runCmd(t, group, "-h")
			if exitCode(err) != 0 || !strings.Contains(out, "Commands:\n  create") {
				t.Errorf("%s -h: %v\n%s", group, err, out)
			}
			out, errOut, err := runCmd(t, group)
			if exitCode(err) != 2 || out != "" || !strings.Contains(errOut, "Commands:") {
				t.Errorf("%s without a command: %v, stdout %q", group, err, out)
			}
		})
	}
}

// TestBadInvocations: mistakes are named, exit 2, show the help on stderr,
// and nothing is sent (there is no server to send to).
func TestBadInvocations(t *testing.T) {
	noServer := []string{"--server", "nats://127.0.0.1:1", "--timeout", "1s"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"account", "create"}, "NAME is required"},
		{"no user name", []string{"user", "create", "acme"}, "NAME is required"},
		{"no account and user", []string{"user", "revoke"}, "ACCOUNT and USER is required"},
		{"extra argument", []string{"account", "get", "acme", "other"}, `unexpected argument "other"`},
		{"unknown flag", []string{"account", "list", "--colour", "red"}, "flag provided but not defined: -colour"},
		{"bad limit", []string{"account", "create", "acme", "--conn", "many"}, `invalid value "many" for flag -conn: want a whole number`},
		{"bad size", []string{"account", "create", "acme", "--data", "1Q"}, "want a number of bytes"},
		{"nothing to update", []string{"account", "update", "acme"}, "nothing to change"},
		{"bad expiry", []string{"user", "create", "acme", "alice", "-o", "-", "--expires-in", "tomorrow"}, `--expires-in must be a positive duration`},
		{"unknown verb", []string{"account", "frobnicate"}, `unknown command "frobnicate"`},
		// The client takes a timeout of 0 or less as its default: such a
		// --timeout was used as 30s without a word.
		{"negative timeout", []string{"account", "list", "--timeout", "-1s"}, `invalid value "-1s" for flag -timeout: want a positive duration`},
		{"wildcard prefix", []string{"account", "list", "--prefix", "prov.*"}, `invalid value "prov.*" for flag -prefix: "prov.*" must be subject tokens`},
		{"prefix with an empty token", []string{"account", "get", "acme", "--prefix", "prov."}, `invalid value "prov." for flag -prefix`},
		{"zero timeout", []string{"user", "list", "acme", "--timeout", "0"}, `invalid value "0" for flag -timeout: want a positive duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := runCmd(t, append(tt.args, noServer...)...)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("got %v (exit %d), want a failure, exit 2", err, exitCode(err))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "connect to") {
				t.Errorf("it tried to connect: %v", err)
			}
			if tt.name != "bad expiry" && !strings.Contains(errOut, "Usage:") {
				t.Errorf("no usage on stderr:\n%s", errOut)
			}
		})
	}
}

func TestNoServerNoService(t *testing.T) {
	t.Parallel()
	t.Run("no server", func(t *testing.T) {
		_, _, err := runCmd(t, "account", "list", "--server", "nats://127.0.0.1:1")
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "connect to nats://127.0.0.1:1") {
			t.Errorf("got %v (exit %d)", err, exitCode(err))
		}
	})
	t.Run("no service", func(t *testing.T) {
		env := provtest.Deployment(t, bootstrap.Options{})
		_, _, err := runCmd(t, "account", "list", "--server", env.Server.URL(), "--creds", env.Init.AdminCreds)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "no provisioner answers on prov.account.list") {
			t.Errorf("got %v (exit %d)", err, exitCode(err))
		}
	})
	t.Run("missing creds file", func(t *testing.T) {
		_, _, err := runCmd(t, "account", "list", "--creds", filepath.Join(t.TempDir(), "nope.creds"))
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "nope.creds") {
			t.Errorf("got %v (exit %d)", err, exitCode(err))
		}
	})
}

// TestValueFlagWithoutValue: a flag that takes a value, given last without
// one, is named as missing its value. Before, reorder put the "--" that ends
// the flags right after it, and the flag package took "--" as its value:
// `provisioner init --dir` wrote a whole deployment, seeds included, into a
// directory named "--", and `serve --config` looked for a file named "--".
func TestValueFlagWithoutValue(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"init --dir", []string{"init", "--dir"}},
		{"init --dir after --store", []string{"init", "--store", "file", "--dir"}},
		{"serve --config", []string{"serve", "--config"}},
		{"store check --dir", []string{"store", "check", "--dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			_, _, err := runCmd(t, tt.args...)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("got %v (exit %d), want a failure, exit 2", err, exitCode(err))
			}
			if !strings.Contains(err.Error(), "flag needs an argument") {
				t.Errorf("error %q does not say the flag needs a value", err)
			}
			if ents, _ := os.ReadDir("."); len(ents) > 0 {
				t.Errorf("a refused command left %d entries, the first %q", len(ents), ents[0].Name())
			}
		})
	}
}

// TestDevResetWithBadFlagsKeepsTheDeployment: dev --reset with a flag that
// init refuses must refuse before it deletes anything. Before, the reset
// removed the whole deployment (keys, store, server data), and then init
// refused the store kind or the port, leaving an empty directory.
func TestDevResetWithBadFlagsKeepsTheDeployment(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown store", []string{"--store", "sql"}, `"sql"`},
		{"port out of range", []string{"--port", "70000"}, "70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dev")
			if _, err := bootstrap.Init(bootstrap.Options{Dir: dir, Store: bootstrap.StoreFile}); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCmd(t, append([]string{"dev", "--dir", dir, "--reset"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
			for _, f := range []string{bootstrap.ConfigFile, bootstrap.SealKeyFile, bootstrap.OperatorIdentityKeyFile} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("the refused dev --reset removed %s: %v", f, err)
				}
			}
		})
	}
}

// TestDevRefusesADeploymentWhoseServerRuns: dev on an init deployment
// whose own nats-server runs (`nats-server -c deploy/nats-server.conf`, the
// README's terminal 1) found the port taken, took a free one and started a
// second server on the same JetStream store and resolver directories, which
// nothing locks: two servers writing one bucket's files. It now refuses,
// naming the running server.
func TestDevRefusesADeploymentWhoseServerRuns(t *testing.T) {
	deploy := filepath.Join(t.TempDir(), "deploy")
	if _, err := bootstrap.Init(bootstrap.Options{Dir: deploy, Port: provtest.FreePort(t)}); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(filepath.Join(deploy, bootstrap.ServerConfFile), natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := startDev(devOptions{dir: deploy, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, io.Discard)
	if err == nil {
		d.Stop()
	}
	if err == nil || !strings.Contains(err.Error(), srv.URL()) {
		t.Fatalf("dev on a deployment whose server runs at %s: %v, want a refusal naming it", srv.URL(), err)
	}
	// Stopped, the deployment is dev's to run.
	srv.Stop()
	if d, err = startDev(devOptions{dir: deploy, port: provtest.FreePort(t), store: bootstrap.StoreJetStream}, io.Discard); err != nil {
		t.Fatalf("dev on the deployment once its server stopped: %v", err)
	}
	d.Stop()
}

// TestDevTakesAnotherPortBesideAForeignServer: a nats-server of another
// project on the deployment's port (a plain one, no auth: the usual
// `nats-server` of a developer) let dev's check connect with any creds,
// and dev refused, calling it this deployment's server, where it used to
// take a free port. Only a server that authenticates the provisioner's
// creds is this deployment's.
func TestDevTakesAnotherPortBesideAForeignServer(t *testing.T) {
	deploy := filepath.Join(t.TempDir(), "deploy")
	port := provtest.FreePort(t)
	if _, err := bootstrap.Init(bootstrap.Options{Dir: deploy, Port: port}); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "plain.conf")
	if err := os.WriteFile(conf, []byte("listen: \"127.0.0.1:"+strconv.Itoa(port)+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(conf, natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	d, err := startDev(devOptions{dir: deploy, port: port, store: bootstrap.StoreJetStream}, io.Discard)
	if err != nil {
		t.Fatalf("dev beside a foreign server without auth on its port %d: %v, want it to take another port", port, err)
	}
	d.Stop()
}

// TestDevResetOnlyInADevDirectory: dev --reset deletes what its directory
// holds; it did so in any directory, so `--dir deploy` (a real init
// deployment, its identity keys among them) or `--dir .` was wiped. It now
// resets only a directory a dev has run in (it holds dev's lock file), or
// an empty one.
func TestDevResetOnlyInADevDirectory(t *testing.T) {
	deploy := filepath.Join(t.TempDir(), "deploy")
	if _, err := bootstrap.Init(bootstrap.Options{Dir: deploy, Store: bootstrap.StoreFile}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{deploy, other} {
		d, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreJetStream, reset: true}, io.Discard)
		if err == nil {
			d.Stop()
		}
		if err == nil || !strings.Contains(err.Error(), "not made by provisioner dev") {
			t.Errorf("dev --reset --dir %s: %v, want a refusal", dir, err)
		}
		if _, err := os.Stat(filepath.Join(dir, devMadeFile)); err == nil {
			t.Errorf("the refused reset left dev's mark in %s", dir)
		}
	}
	// A plain dev on the real deployment uses it as it is, and takes its
	// lock there: that does not make it resettable.
	d, err := startDev(devOptions{dir: deploy, port: provtest.FreePort(t), store: bootstrap.StoreFile, portSet: true}, io.Discard)
	if err != nil {
		t.Fatalf("dev on an init deployment: %v", err)
	}
	d.Stop()
	if _, err := startDev(devOptions{dir: deploy, port: provtest.FreePort(t), store: bootstrap.StoreFile, reset: true}, io.Discard); err == nil || !strings.Contains(err.Error(), "not made by provisioner dev") {
		t.Errorf("dev --reset of an init deployment a plain dev ran in: %v, want a refusal", err)
	}
	for _, f := range []string{bootstrap.ConfigFile, bootstrap.OperatorIdentityKeyFile} {
		if _, err := os.Stat(filepath.Join(deploy, f)); err != nil {
			t.Errorf("the refused dev --reset removed %s: %v", f, err)
		}
	}
	// A deployment dev made is reset.
	made := filepath.Join(t.TempDir(), "dev")
	if d, err = startDev(devOptions{dir: made, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard); err != nil {
		t.Fatal(err)
	}
	d.Stop()
	if d, err = startDev(devOptions{dir: made, port: provtest.FreePort(t), store: bootstrap.StoreFile, reset: true}, io.Discard); err != nil {
		t.Fatalf("dev --reset of a deployment dev made: %v", err)
	}
	d.Stop()
	if _, err := os.Stat(filepath.Join(other, "notes.txt")); err != nil {
		t.Errorf("the refused dev --reset removed notes.txt: %v", err)
	}
}

// TestDevPortZeroTakesAFreePort: dev --port 0 asks for any free port. It
// started the server on the deployment's port (init writes 4222 for 0),
// and failed when that was taken, since the check for a taken port asked
// about port 0, which is always free.
func TestDevPortZeroTakesAFreePort(t *testing.T) {
	// 4222 taken: by this listener, or by whatever holds it already.
	if ln, err := net.Listen("tcp", "127.0.0.1:4222"); err == nil {
		defer ln.Close()
	}
	dir := filepath.Join(t.TempDir(), "dev")
	d, err := startDev(devOptions{dir: dir, port: 0, store: bootstrap.StoreFile}, io.Discard)
	if err != nil {
		t.Fatalf("dev --port 0 with 4222 taken: %v", err)
	}
	defer d.Stop()
	if port := d.srv.Addr().(*net.TCPAddr).Port; port == 0 || port == 4222 {
		t.Errorf("dev --port 0 listens on %d", port)
	}
}

// TestSeedOnTheCommandLineIsNotEchoed: a seed pasted where the CLI wants a
// path (--identity, --creds) or a value came back in the error ("open
// SO...: no such file", the flag package's "invalid value"), on stderr and
// in a container's log. It is refused before anything reads it, unnamed.
func TestSeedOnTheCommandLineIsNotEchoed(t *testing.T) {
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	for _, args := range [][]string{
		{"operator", "add-signing-key", "--identity", string(seed), "--operator-jwt", "x.jwt"},
		{"account", "list", "--creds", string(seed)},
		{"bench", "-n", string(seed)},
		{"store", "check", "--dir", "'" + string(seed) + "'"},
		{string(seed), "x"},
	} {
		out, errOut, err := runCmd(t, args...)
		if err == nil {
			t.Errorf("%s: no error", args[0])
			continue
		}
		for _, s := range []string{out, errOut, err.Error()} {
			if strings.Contains(s, string(seed)) {
				t.Errorf("%s %s: the seed is echoed: %q", args[0], args[1], s)
			}
		}
		if !strings.Contains(err.Error(), "holds a seed") {
			t.Errorf("%s %s: %v, want the seed refused", args[0], args[1], err)
		}
	}
}

// TestDevResetKeepsFilesDevDidNotMake: a first dev in a directory that
// already held files of its own (`--dir .` in a project) writes its
// deployment beside them, and marked the directory as made by dev: the
// next `dev --reset` deleted everything in it, those files too. Only a
// directory dev found empty (or made) is dev's to reset.
func TestDevResetKeepsFilesDevDidNotMake(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard)
	if err != nil {
		t.Fatalf("dev in a directory with a file of its own: %v", err)
	}
	d.Stop()
	d, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile, reset: true}, io.Discard)
	if err == nil {
		d.Stop()
	}
	if _, serr := os.Stat(filepath.Join(dir, "notes.txt")); serr != nil {
		t.Fatalf("dev --reset deleted notes.txt, which dev did not make (reset: %v)", err)
	}
	if err == nil || !strings.Contains(err.Error(), "not made by provisioner dev") {
		t.Errorf("dev --reset of a directory dev did not make: %v, want a refusal", err)
	}

}

// TestEmptyFlagValueIsRefused: a flag of init or dev given an empty or
// zero value is refused, naming the flag, and nothing is written. Before,
// bootstrap took it for a flag left out and put its default in its place
// without a word: `init --resolver-limit 0` (to nats-server, a limit of 0
// is no limit) wrote limit 10000, `init --prefix ""` wrote prov, and
// `dev --dir ""` (an unset shell variable) made a deployment, seeds and
// all, in the current directory.
func TestEmptyFlagValueIsRefused(t *testing.T) {
	tests := []struct {
		name string
		args []string
		flag string
	}{
		{"init --resolver-limit 0", []string{"init", "--dir", "deploy", "--resolver-limit", "0"}, "--resolver-limit"},
		{"init --port 0", []string{"init", "--dir", "deploy", "--port", "0"}, "--port"},
		{"init --prefix empty", []string{"init", "--dir", "deploy", "--prefix", ""}, "--prefix"},
		{"init --host empty", []string{"init", "--dir", "deploy", "--host", ""}, "--host"},
		{"init --kv-bucket empty", []string{"init", "--dir", "deploy", "--kv-bucket", ""}, "--kv-bucket"},
		{"init --store empty", []string{"init", "--dir", "deploy", "--store", ""}, "--store"},
		{"init --operator-name empty", []string{"init", "--dir", "deploy", "--operator-name", ""}, "--operator-name"},
		{"dev --dir empty", []string{"dev", "--dir", "", "--port", "0", "--store", "file"}, "--dir"},
		{"dev --store empty", []string{"dev", "--dir", "dev", "--port", "0", "--store", ""}, "--store"},
	}
	// "0" is a value of a string flag, not a zero.
	if err := run(context.Background(), []string{"init", "--dir", filepath.Join(t.TempDir(), "d"), "--prefix", "0", "--operator-name", "0"}, io.Discard, io.Discard); err != nil {
		t.Errorf("init --prefix 0 --operator-name 0: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Chdir(t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			err := run(ctx, tt.args, &out, &errOut)
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("got %v (exit %d), want a failure, exit 2", err, exitCode(err))
			}
			if !strings.Contains(err.Error(), tt.flag) {
				t.Errorf("error %q does not name %s", err, tt.flag)
			}
			if ents, _ := os.ReadDir("."); len(ents) > 0 {
				t.Errorf("a refused command left %d entries, the first %q", len(ents), ents[0].Name())
			}
		})
	}
}

// TestDevAfterAFirstRunCutInsideInit: a first dev killed while init wrote
// the deployment leaves dev's mark and some of the files, but no
// config.json. The next dev must say that --reset is the way out (the mark
// is there so that it may), and --reset must work. Before, it repeated
// init's "exists; init never overwrites a deployment (choose another --dir
// or remove it)", to someone who never ran init.
func TestDevAfterAFirstRunCutInsideInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	if err := os.MkdirAll(filepath.Join(dir, bootstrap.OfflineDir), 0o700); err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	for name, data := range map[string][]byte{
		devMadeFile:                       []byte("made by provisioner dev\n"),
		bootstrap.OperatorIdentityKeyFile: append(seed, '\n'),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err = startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--reset") {
		t.Fatalf("dev on a half-made deployment: %v, want an error that points at --reset", err)
	}
	d, err := startDev(devOptions{dir: dir, port: provtest.FreePort(t), store: bootstrap.StoreFile, reset: true}, io.Discard)
	if err != nil {
		t.Fatalf("dev --reset of a half-made deployment: %v", err)
	}
	d.Stop()
}

// TestDevInACopiedOrMovedDirectory: nats-server.conf names the files and
// directories of the server (the operator JWT, the resolver's and
// JetStream's directories) by absolute paths, those of the directory init
// wrote it in. A dev directory copied elsewhere (or the checkout holding
// ./provisioner-dev moved) and run with dev --dir ran its server on the
// original's resolver and JetStream data, beside a store of its own, while
// it said "data in" the copy; moved, it failed with the server's "open
// .../operator.jwt". dev now refuses such a directory before it starts
// anything, naming the directory the config was written for.
func TestDevInACopiedOrMovedDirectory(t *testing.T) {
	orig := filepath.Join(t.TempDir(), "dev")
	d, err := startDev(devOptions{dir: orig, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d.Stop()
	before := snapshotNames(t, orig)

	cp := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(cp, os.DirFS(orig)); err != nil {
		t.Fatal(err)
	}
	d, err = startDev(devOptions{dir: cp, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard)
	if err == nil {
		d.Stop()
		t.Errorf("dev in a copy of a dev directory started a server on the original's data (%s)", orig)
	} else if !strings.Contains(err.Error(), orig) {
		t.Errorf("dev in a copy: %v, want an error naming %s", err, orig)
	}
	if after := snapshotNames(t, orig); !slices.Equal(before, after) {
		t.Errorf("dev in the copy changed the original:\nbefore %v\nafter  %v", before, after)
	}

	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(orig, moved); err != nil {
		t.Fatal(err)
	}
	if d, err = startDev(devOptions{dir: moved, port: provtest.FreePort(t), store: bootstrap.StoreFile}, io.Discard); err == nil {
		d.Stop()
		t.Fatal("dev in a moved directory started")
	}
	if !strings.Contains(err.Error(), orig) || !strings.Contains(err.Error(), "--reset") {
		t.Errorf("dev in a moved directory: %v, want an error naming %s and --reset", err, orig)
	}
}

// snapshotNames lists the paths under dir.
func snapshotNames(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestDevPortTakenOnTheDeploymentsHost: dev switches to a free port when
// its port is taken, but asked only whether it was taken on 127.0.0.1: on
// a deployment made with `init --host ::1`, whose server listens on [::1],
// a port taken there was found free, and the server failed to start with
// "address already in use".
func TestDevPortTakenOnTheDeploymentsHost(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := filepath.Join(t.TempDir(), "deploy")
	if _, err := bootstrap.Init(bootstrap.Options{Dir: dir, Host: "::1", Port: port, Store: bootstrap.StoreFile}); err != nil {
		t.Fatal(err)
	}
	d, err := startDev(devOptions{dir: dir, port: port, store: bootstrap.StoreFile}, io.Discard)
	if err != nil {
		t.Fatalf("dev with port %d taken on [::1], the deployment's host: %v", port, err)
	}
	defer d.Stop()
	if got := d.srv.Addr().(*net.TCPAddr).Port; got == port {
		t.Errorf("dev listens on the taken port %d", got)
	}
}

// TestBenchRefusedKeepsTheProfile: bench options that Start refuses are
// refused before the --cpuprofile file is made: os.Create emptied the
// file it names (an earlier run's profile), and a run that measured
// nothing left it an empty profile.
func TestBenchRefusedKeepsTheProfile(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "cpu.prof")
	if err := os.WriteFile(prof, []byte("an earlier run's profile"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"bench", "-n", "-1", "--cpuprofile", prof},
		{"bench", "--accounts", "5", "--cpuprofile", prof},
	} {
		_, _, err := runCmd(t, args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "bad options") {
			t.Fatalf("%s: got %v (exit %d), want the options refused, exit 2", strings.Join(args, " "), err, exitCode(err))
		}
		if data, _ := os.ReadFile(prof); string(data) != "an earlier run's profile" {
			t.Fatalf("%s: the profile file now holds %d bytes %.40q", strings.Join(args, " "), len(data), data)
		}
	}
}

// TestBenchZeroFlagIsRefused: bench's -n 0, -c 0, --rounds 0 and the like
// were taken for flags left out, bench.Options' zero, and the benchmark
// ran with the defaults without a word (init and dev refuse an empty
// value). They are refused, naming the flag, before anything starts. The
// context is cancelled beforehand, so that on code that accepted them no
// benchmark runs: Start fails, and its directory tells it started.
func TestBenchZeroFlagIsRefused(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, flag := range []string{"-n", "-c", "--c-high", "--rounds", "--versions", "--revocations"} {
		dir := filepath.Join(t.TempDir(), "bench")
		var out, errOut bytes.Buffer
		err := run(ctx, []string{"bench", flag, "0", "--dir", dir}, &out, &errOut)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), flag) {
			t.Errorf("bench %s 0: got %v (exit %d), want a refusal naming %s, exit 2", flag, err, exitCode(err), flag)
		}
		if _, serr := os.Stat(dir); serr == nil {
			t.Errorf("bench %s 0: the benchmark started (%s exists)", flag, dir)
		}
	}
	// --accounts 0 is its default, no scale mode: not refused for it.
	err := run(ctx, []string{"bench", "--accounts", "0", "--dir", filepath.Join(t.TempDir(), "bench")}, io.Discard, io.Discard)
	if err != nil && strings.Contains(err.Error(), "--accounts") {
		t.Errorf("bench --accounts 0: %v", err)
	}
}

// TestBenchOnlyMatchingNothingIsRefused: an --only that matches no
// operation (a typo: "acount") made the set-up (1,000 revocations) and
// printed an empty table, exit 0, a pass even with --strict. It is
// refused, naming --only, before the set-up.
func TestBenchOnlyMatchingNothingIsRefused(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"bench", "--only", "^acount", "--strict", "--dir", filepath.Join(t.TempDir(), "bench")}, &out, &errOut)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "--only") {
		t.Fatalf("bench --only matching nothing: got %v (exit %d), want a refusal naming --only, exit 2\n%s", err, exitCode(err), out.String())
	}
	if out.Len() > 0 {
		t.Fatalf("bench --only matching nothing printed a report:\n%s", out.String())
	}
}

// cancelOn is a writer that cancels a context once what was written to it
// holds a text.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	text   string
	cancel context.CancelFunc
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.text) {
		w.cancel()
	}
	return len(p), nil
}

// TestBenchPrintsTheRowsMeasuredBeforeAFailedScale: the scale mode runs
// after the rows, minutes of them; when it fails (here: interrupted as
// its fill starts), the rows measured are printed before the error, not
// dropped.
func TestBenchPrintsTheRowsMeasuredBeforeAFailedScale(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errOut := &cancelOn{text: "scale mode: filling", cancel: cancel}
	var out bytes.Buffer
	err := run(ctx, []string{"bench", "--only", `^user\.create`, "-n", "8", "-c", "2", "--c-high", "2", "--rounds", "1",
		"--revocations", "1", "--versions", "1", "--accounts", "100000", "--dir", filepath.Join(t.TempDir(), "bench")}, &out, errOut)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("bench interrupted in its scale mode: %v, want context.Canceled\nstderr:\n%s", err, errOut.buf.String())
	}
	if !strings.Contains(out.String(), "user.create") {
		t.Fatalf("bench interrupted in its scale mode printed no row measured before it:\n%s\nstderr:\n%s", out.String(), errOut.buf.String())
	}
}

// TestDevFallbackPortIsTheConfigs: a first dev whose port was taken ran
// its server on a free port, but init had written the port asked for into
// config.json (and nats-server.conf), so a later command given that config
// (store reseal, operator finish, serve beside `nats-server -c`) connected
// to whatever held the port asked for. The deployment is now made with the
// port its server runs on, and a later dev without --port runs on it again.
func TestDevFallbackPortIsTheConfigs(t *testing.T) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(provtest.FreePort(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	dir := filepath.Join(t.TempDir(), "dev")
	configPort := func() int {
		t.Helper()
		cfg, err := config.Load(filepath.Join(dir, bootstrap.ConfigFile))
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(cfg.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		p, err := strconv.Atoi(u.Port())
		if err != nil {
			t.Fatalf("config.json's nats_url %s: %v", cfg.NATSURL, err)
		}
		return p
	}

	d, err := startDev(devOptions{dir: dir, port: taken, portSet: true, store: bootstrap.StoreFile}, io.Discard)
	if err != nil {
		t.Fatalf("dev with port %d taken: %v", taken, err)
	}
	ran := d.srv.Addr().(*net.TCPAddr).Port
	d.Stop()
	if ran == taken {
		t.Fatalf("dev listens on the taken port %d", ran)
	}
	if got := configPort(); got != ran {
		t.Fatalf("config.json names port %d (asked for, taken), the server ran on %d", got, ran)
	}

	// Run again without --port: on the deployment's port, unless that was
	// taken meanwhile (and said so).
	var out bytes.Buffer
	d, err = startDev(devOptions{dir: dir, port: 4222, store: bootstrap.StoreFile}, &out)
	if err != nil {
		t.Fatalf("dev again: %v", err)
	}
	defer d.Stop()
	again := d.srv.Addr().(*net.TCPAddr).Port
	if again != configPort() && !strings.Contains(out.String(), "is taken") {
		t.Fatalf("dev again without --port runs on %d, config.json names %d:\n%s", again, configPort(), out.String())
	}
}

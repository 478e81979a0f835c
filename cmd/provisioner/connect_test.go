package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// writeContext writes a natscli context file and returns its path.
func writeContext(t *testing.T, dir, name string, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".json")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inboxAdmin issues a system user that may send provisioning requests and
// read replies only under the given inbox prefixes (each subscribed as
// PREFIX.>); it returns its creds file.
func inboxAdmin(t *testing.T, c *cli, inboxes ...string) string {
	t.Helper()
	return provtest.SystemUserCreds(t, c.env.Dir, c.env.Init.SystemAccount, "inbox-admin", func(uc *jwt.UserClaims) {
		uc.Pub.Allow.Add("prov.>")
		for _, in := range inboxes {
			uc.Sub.Allow.Add(in + ".>")
		}
	})
}

// TestConnectSettings checks where the connection settings come from: the
// flags, a natscli context file, and the custom inbox prefix (a flag, the
// context's, or else the one the creds may subscribe to), against users
// that may read replies only under custom inbox prefixes, as the admin
// creds Init writes (_INBOX_admin.>).
func TestConnectSettings(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	url, admin := c.env.Server.URL(), c.env.Init.AdminCreds
	inboxCreds := inboxAdmin(t, c, "_INBOX_admin")
	// Two prefixes: the creds do not say which one to use.
	twoInboxCreds := inboxAdmin(t, c, "_INBOX_admin", "_INBOX_other")
	dir := t.TempDir()
	adminCtx := writeContext(t, dir, "admin", map[string]any{"description": "x", "url": url, "creds": admin, "color_scheme": "dark"})
	inboxCtx := writeContext(t, dir, "inbox", map[string]any{"url": url, "creds": "file://" + inboxCreds, "inbox_prefix": "_INBOX_admin"})
	noInboxCtx := writeContext(t, dir, "noinbox", map[string]any{"url": url, "creds": inboxCreds})
	twoInboxCtx := writeContext(t, dir, "twoinbox", map[string]any{"url": url, "creds": twoInboxCreds})
	wrongURLCtx := writeContext(t, dir, "wrong", map[string]any{"url": "nats://127.0.0.1:1", "creds": admin})

	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for success
	}{
		{"flags", []string{"--server", url, "--creds", admin}, ""},
		{"context file", []string{"--context", adminCtx}, ""},
		{"context's inbox prefix", []string{"--context", inboxCtx}, ""},
		{"inbox prefix flag", []string{"--server", url, "--creds", inboxCreds, "--inbox-prefix", "_INBOX_admin"}, ""},
		{"flag over the context's url", []string{"--context", wrongURLCtx, "--server", url}, ""},
		{"flag over the context's inbox prefix", []string{"--context", inboxCtx, "--inbox-prefix", "_INBOX_other", "--timeout", "1s"}, `Permissions Violation for Subscription to "_INBOX_other`},
		{"inbox prefix of the creds", []string{"--context", noInboxCtx}, ""},
		{"default inbox not allowed", []string{"--context", twoInboxCtx, "--timeout", "1s"}, `Permissions Violation for Subscription to "_INBOX.`},
		{"two inbox prefixes, one chosen", []string{"--context", twoInboxCtx, "--inbox-prefix", "_INBOX_other"}, ""},
		{"admin creds with their inbox prefix", []string{"--server", url, "--creds", admin, "--inbox-prefix", bootstrap.AdminInboxPrefix}, ""},
		// The admin creds Init writes may not read replies on _INBOX.>;
		// the flag comes before the prefix of the creds.
		{"default inbox with the admin creds", []string{"--server", url, "--creds", admin, "--inbox-prefix", "_INBOX", "--timeout", "1s"}, `Permissions Violation for Subscription to "_INBOX.`},
		{"context's url", []string{"--context", wrongURLCtx}, "connect to nats://127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCmd(t, append([]string{"account", "get", "acme", "--json"}, tt.args...)...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("account get: %v", err)
				}
				if !strings.Contains(out, `"name": "acme"`) {
					t.Errorf("account get printed:\n%s", out)
				}
				return
			}
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v (exit %d), want exit 2 and %q", err, exitCode(err), tt.wantErr)
			}
		})
	}
}

// TestContextByName finds a context by name under $XDG_CONFIG_HOME, and
// takes the URL and creds from NATS_URL and NATS_CREDS, as natscli does.
func TestContextByName(t *testing.T) {
	c := newCLI(t, bootstrap.Options{})
	url, admin := c.env.Server.URL(), c.env.Init.AdminCreds
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("CREDS_DIR", filepath.Dir(admin))
	writeContext(t, filepath.Join(cfg, "nats", "context"), "prov", map[string]any{"url": url, "creds": "$CREDS_DIR/" + filepath.Base(admin)})
	writeContext(t, filepath.Join(cfg, "nats", "context"), "nowhere", map[string]any{"url": "nats://127.0.0.1:1"})

	if out, _, err := runCmd(t, "account", "list", "--context", "prov"); err != nil || out != "No accounts.\n" {
		t.Fatalf("--context prov: %v\n%s", err, out)
	}
	t.Setenv("NATS_CONTEXT", "prov")
	if _, _, err := runCmd(t, "account", "list"); err != nil {
		t.Fatalf("NATS_CONTEXT=prov: %v", err)
	}
	// NATS_URL and NATS_CREDS come before the context, flags before them.
	t.Setenv("NATS_CONTEXT", "nowhere")
	t.Setenv("NATS_URL", url)
	t.Setenv("NATS_CREDS", admin)
	if _, _, err := runCmd(t, "account", "list"); err != nil {
		t.Fatalf("NATS_URL and NATS_CREDS over the context: %v", err)
	}
	if _, _, err := runCmd(t, "account", "list", "--server", "nats://127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("--server over NATS_URL: %v", err)
	}
	_, _, err := runCmd(t, "account", "list", "--context", "missing")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(cfg, "nats", "context", "missing.json")) {
		t.Errorf("a missing context: %v", err)
	}
}

// TestSelectedContext: with neither --context nor $NATS_CONTEXT, the
// context selected with `nats context select` (natscli's context.txt) is
// used, as natscli uses it; the flag and the variable come before it.
func TestSelectedContext(t *testing.T) {
	c := newCLI(t, bootstrap.Options{})
	url, admin := c.env.Server.URL(), c.env.Init.AdminCreds
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	writeContext(t, filepath.Join(cfg, "nats", "context"), "prov", map[string]any{"url": url, "creds": admin})
	writeContext(t, filepath.Join(cfg, "nats", "context"), "nowhere", map[string]any{"url": "nats://127.0.0.1:1"})
	selectContext := func(name string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(cfg, "nats", "context.txt"), []byte(name), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	selectContext("prov")
	if out, _, err := runCmd(t, "account", "list"); err != nil || out != "No accounts.\n" {
		t.Fatalf("the selected context prov: %v\n%s", err, out)
	}
	selectContext("nowhere")
	if _, _, err := runCmd(t, "account", "list"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("the selected context nowhere: %v", err)
	}
	if _, _, err := runCmd(t, "account", "list", "--context", "prov"); err != nil {
		t.Fatalf("--context over the selected context: %v", err)
	}
	t.Setenv("NATS_CONTEXT", "prov")
	if _, _, err := runCmd(t, "account", "list"); err != nil {
		t.Fatalf("NATS_CONTEXT over the selected context: %v", err)
	}
	t.Setenv("NATS_CONTEXT", "")
	// A selection whose file is gone is an error naming it, not a
	// connection to the default URL.
	selectContext("gone\n")
	_, _, err := runCmd(t, "account", "list")
	if err == nil || !strings.Contains(err.Error(), `"gone"`) || !strings.Contains(err.Error(), "selected") {
		t.Fatalf("a selected context that is gone: %v", err)
	}
}

// TestLoadContext: what a context holds is read with natscli's field names,
// and what this command cannot honour is refused by name, without quoting
// secrets.
func TestLoadContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home, _ := os.UserHomeDir()
	full := writeContext(t, dir, "full", map[string]any{
		"url": "nats://a:4222", "user": "bob", "password": "hunter2", "token": "tok", "creds": "~/x.creds",
		"nkey": "file:///k.nk", "cert": "/c.pem", "key": "/k.pem", "ca": "/ca.pem", "inbox_prefix": "_INBOX_bob",
		"user_jwt": "eyJ", "user_seed": "SUAX", "tls_first": true, "jetstream_domain": "hub",
	})
	got, err := loadContext(full)
	if err != nil {
		t.Fatal(err)
	}
	want := natsContext{URL: "nats://a:4222", User: "bob", Password: "hunter2", Token: "tok", Creds: filepath.Join(home, "x.creds"),
		NKey: "/k.nk", Cert: "/c.pem", Key: "/k.pem", CA: "/ca.pem", InboxPrefix: "_INBOX_bob", UserJWT: "eyJ", UserSeed: "SUAX", TLSFirst: true}
	if *got != want {
		t.Errorf("loadContext = %+v\nwant %+v", *got, want)
	}

	bad := os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"password": "hunter2", `), 0o600)
	if bad != nil {
		t.Fatal(bad)
	}
	tests := []struct {
		name   string
		fields map[string]any
		want   string
	}{
		{"op creds", map[string]any{"creds": "op://vault/item/creds"}, `"creds": the op: scheme is not supported`},
		{"nsc lookup", map[string]any{"nsc": "nsc://op/acct/user"}, `"nsc" lookups are not supported`},
		{"env password", map[string]any{"user": "bob", "password": "env://PASSWORD"}, `"password" uses the env: scheme`},
		{"data seed", map[string]any{"user_jwt": "eyJ", "user_seed": "data:,SUAX"}, `"user_seed" uses the data: scheme`},
		{"socks", map[string]any{"socks_proxy": "127.0.0.1:1080"}, `"socks_proxy" is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadContext(writeContext(t, t.TempDir(), "c", tt.fields))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("invalid JSON", func(t *testing.T) {
		_, err := loadContext(filepath.Join(dir, "broken.json"))
		if err == nil || !strings.Contains(err.Error(), "invalid JSON") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("not a name", func(t *testing.T) {
		_, err := loadContext("../etc/passwd")
		if err == nil || !strings.Contains(err.Error(), "not a context name") {
			t.Errorf("got %v", err)
		}
	})
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ give, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://bob:hunter2@host:4222", "nats://[redacted]@host:4222"},
		{"tok@host", "[redacted]@host"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.give); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

// TestCLIStopsAtAPermissionsViolation: creds that may not read replies on
// the inbox prefix, or may not send the request (a newcomer's
// `--creds deploy/provisioner.creds`), can never get an answer, and the
// server says so at once; the CLI waited its whole --timeout (30 s by
// default) before saying what the server had said. It stops at the
// violation and names it.
func TestCLIStopsAtAPermissionsViolation(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	url, admin := c.env.Server.URL(), c.env.Init.AdminCreds
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"an inbox the creds may not read", []string{"--creds", admin, "--inbox-prefix", "_INBOX"}, `Permissions Violation for Subscription to "_INBOX.`},
		{"creds that may not send the request", []string{"--creds", c.env.Init.ProvisionerCreds}, `Permissions Violation for Publish to "prov.account.list"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := runCmd(t, append([]string{"account", "list", "--server", url, "--timeout", "20s"}, tt.args...)...)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("account list took %s, want it to stop at the server's violation", took.Round(time.Millisecond))
			}
			if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v (exit %d), want exit 2 and %q", err, exitCode(err), tt.wantErr)
			}
		})
	}
}

// TestCLIPublishViolationIsNotInDoubt: a request the server would not
// take from the creds (Permissions Violation for Publish) never reached
// the service, but account create said the service "may still carry the
// request out", and the operator was left to check whether acme was
// made. It says that nothing was done.
func TestCLIPublishViolationIsNotInDoubt(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	_, _, err := runCmd(t, "account", "create", "acme", "--server", c.env.Server.URL(), "--creds", c.env.Init.ProvisionerCreds, "--timeout", "20s")
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), `Permissions Violation for Publish to "prov.account.create"`) {
		t.Fatalf("got %v (exit %d), want exit 2 and the violation", err, exitCode(err))
	}
	if strings.Contains(err.Error(), "may still carry") || !strings.Contains(err.Error(), "nothing was done") {
		t.Errorf("error %q, want it to say that nothing was done, and not that the service may still carry the request out", err)
	}
	if out := c.mustRun(t, "account", "list"); strings.Contains(out, "acme") {
		t.Errorf("acme was created:\n%s", out)
	}
}

// TestSeedInTheEnvironmentIsNotEchoed: NATS_CREDS, or a context's creds or
// nkey, given the creds file's content or a seed instead of a path (a CI
// secret put in the variable as it is) is refused without quoting it, as
// a seed on the command line is. Before, the error was stat's or open's,
// "creds: stat -----BEGIN NATS USER JWT----- ... SUA...: file name too
// long", the seed on stderr and in the CI log.
func TestSeedInTheEnvironmentIsNotEchoed(t *testing.T) {
	c := newCLI(t, bootstrap.Options{})
	url := c.env.Server.URL()
	raw, err := os.ReadFile(c.env.Init.AdminCreds)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := jwt.ParseDecoratedUserNKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := seed.Seed()
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		env  map[string]string
	}{
		{"NATS_CREDS creds content", map[string]string{"NATS_CREDS": string(raw)}},
		{"NATS_CREDS seed", map[string]string{"NATS_CREDS": string(s)}},
		{"context creds content", map[string]string{"NATS_CONTEXT": writeContext(t, dir, "content", map[string]any{"url": url, "creds": string(raw)})}},
		{"context nkey seed", map[string]string{"NATS_CONTEXT": writeContext(t, dir, "nkey", map[string]any{"url": url, "nkey": string(s)})}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NATS_URL", url)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCmd(t, "account", "list")
			if err == nil || exitCode(err) != 2 {
				t.Fatalf("got %v (exit %d), want a refusal, exit 2", err, exitCode(err))
			}
			for _, o := range []string{out, errOut, err.Error()} {
				if strings.Contains(o, string(s)) {
					t.Fatalf("the seed is echoed: %q", o)
				}
			}
			if !strings.Contains(err.Error(), "holds a seed") {
				t.Errorf("%v, want the seed refused", err)
			}
		})
	}
}

// TestSeedFileForCredsNeverReachesTheServer: a seed file given where a
// creds file goes (--creds alice.nk, $NATS_CREDS, a context's "creds", a
// config's service_creds), or a seed as a context's "user_jwt", was handed
// to nats.go, which sends a creds file's first block as the JWT of its
// CONNECT: the seed went to the server, which refused it and published it
// as the client's "jwt" in its auth error event, for every system-account
// user that follows those events. Each is refused before it connects,
// naming where the file came from.
func TestSeedFileForCredsNeverReachesTheServer(t *testing.T) {
	c := newCLI(t, bootstrap.Options{})
	authErrors := c.env.AuthErrors(t)
	url := c.env.Server.URL()
	raw, err := os.ReadFile(c.env.Init.AdminCreds)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "admin.nk")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	// A JetStream deployment's config (service_creds, store migrate and
	// reseal) with the file deployment's server and a seed file for creds.
	var fields map[string]any
	cfgRaw, _ := os.ReadFile(c.env.Init.Config)
	if err := json.Unmarshal(cfgRaw, &fields); err != nil {
		t.Fatal(err)
	}
	storeDir := c.env.Config.StoreDir
	delete(fields, "store_dir")
	fields["service_creds"] = seedFile
	fields["nats_url"] = url
	cfgRaw, _ = json.Marshal(fields)
	kvConfig := filepath.Join(c.env.Dir, "config.kv.json") // its paths are relative to it
	if err := os.WriteFile(kvConfig, cfgRaw, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"--creds", []string{"account", "list", "--server", url, "--creds", seedFile}, nil, "creds"},
		{"NATS_CREDS", []string{"account", "list", "--server", url}, map[string]string{"NATS_CREDS": seedFile}, "NATS_CREDS"},
		{"context creds", []string{"account", "list"}, map[string]string{"NATS_CONTEXT": writeContext(t, dir, "creds", map[string]any{"url": url, "creds": seedFile})}, `"creds"`},
		{"context user_jwt", []string{"account", "list"}, map[string]string{"NATS_CONTEXT": writeContext(t, dir, "userjwt", map[string]any{"url": url, "user_jwt": string(seed), "user_seed": string(seed)})}, `"user_jwt"`},
		{"store migrate service_creds", []string{"store", "migrate", "--from-dir", storeDir, "--config", kvConfig}, nil, "service_creds"},
		{"store reseal service_creds", []string{"store", "reseal", "--config", kvConfig}, nil, "service_creds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NATS_CREDS", "")
			t.Setenv("NATS_CONTEXT", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			out, errOut, err := runCmd(t, tt.args...)
			if err == nil {
				t.Fatal("the command succeeded")
			}
			for _, o := range []string{out, errOut, err.Error()} {
				if strings.Contains(o, string(seed)) {
					t.Fatalf("the seed is echoed: %q", o)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("refused with %q, want it to name %s", err, tt.want)
			}
		})
	}
	for _, ev := range authErrors(2 * time.Second) {
		if strings.Contains(string(ev), string(seed)) {
			t.Fatalf("the server's auth error event carries the seed: %s", ev)
		}
	}
}

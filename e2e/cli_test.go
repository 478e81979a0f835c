package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cli runs the provisioner binary's CLI against the deployment with the
// admin creds and returns its stdout, stderr and exit code.
func (d *deployment) cli(args ...string) (stdout, stderr string, code int) {
	t := d.t
	t.Helper()
	ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
	defer cancel()
	args = append(args, "--server", d.url, "--creds", filepath.Join(d.dir, "admin.creds"))
	cmd := exec.CommandContext(ctx, d.provisioner, args...)
	cmd.Env = d.env
	cmd.WaitDelay = 2 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("provisioner %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("provisioner %s: timed out", strings.Join(args, " "))
	}
	return out.String(), errOut.String(), code
}

// mustCLI runs a CLI command that must exit 0.
func (d *deployment) mustCLI(args ...string) string {
	d.t.Helper()
	out, errOut, code := d.cli(args...)
	if code != 0 {
		d.t.Fatalf("provisioner %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// TestCLI drives the deployment with the built binary's CLI, as a person
// would: an account, a user whose creds file the nats CLI connects with,
// JSON output, a service error and help.
func TestCLI(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	d.startServer()
	d.startServe()

	out := d.mustCLI("account", "create", "cli", "--conn", "5", "--tag", "e2e")
	if !strings.HasPrefix(out, "Created account cli (A") {
		t.Fatalf("account create printed:\n%s", out)
	}

	creds := filepath.Join(t.TempDir(), "alice.creds")
	out = d.mustCLI("user", "create", "cli", "alice", "-o", creds, "--pub-allow", "orders.>")
	if !strings.Contains(out, "Creds file   "+creds) {
		t.Errorf("user create printed:\n%s", out)
	}
	if fi, err := os.Stat(creds); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v %v, want mode 0600", err, fi.Mode())
	}
	// natscli exits 0 on a permissions violation: read what it says.
	pub, err := d.nats(10*time.Second, creds, "pub", "orders.new", "hi")
	if err != nil || !strings.Contains(pub, `Published 2 bytes to "orders.new"`) || strings.Contains(strings.ToLower(pub), "violation") {
		t.Fatalf("nats pub with the CLI's creds: %v\n%s", err, pub)
	}

	var get struct {
		Account struct {
			Name      string `json:"name"`
			PublicKey string `json:"public_key"`
			Claims    struct {
				Nats struct {
					Limits struct {
						Conn int64 `json:"conn"`
					} `json:"limits"`
				} `json:"nats"`
			} `json:"claims"`
		} `json:"account"`
	}
	out = d.mustCLI("account", "get", "cli", "--json")
	if err := json.Unmarshal([]byte(out), &get); err != nil || get.Account.Name != "cli" || get.Account.Claims.Nats.Limits.Conn != 5 {
		t.Fatalf("account get --json: %v\n%s", err, out)
	}
	var users struct {
		Users []struct {
			Name    string `json:"name"`
			Revoked bool   `json:"revoked"`
		} `json:"users"`
		Total int `json:"total"`
	}
	out = d.mustCLI("user", "list", "cli", "--json")
	if err := json.Unmarshal([]byte(out), &users); err != nil || users.Total != 1 || users.Users[0].Name != "alice" {
		t.Fatalf("user list --json: %v\n%s", err, out)
	}

	// A service error: its description and code on stderr, exit 1.
	out, errOut, code := d.cli("account", "get", "nobody")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "provisioner: ") || !strings.Contains(errOut, "nobody") || !strings.HasSuffix(errOut, " (code 404)\n") {
		t.Errorf("account get nobody: exit %d, stdout %q, stderr %q; want exit 1 and \"provisioner: <description> (code 404)\"", code, out, errOut)
	}
	// Other failures exit 2.
	if _, errOut, code := d.cli("account", "create"); code != 2 || !strings.Contains(errOut, "NAME is required") {
		t.Errorf("account create without a name: exit %d\n%s", code, errOut)
	}

	// Help exits 0, for the new commands and the old.
	for _, args := range [][]string{{"account", "create", "-h"}, {"user", "create", "--help"}, {"user", "-h"}, {"serve", "-h"}} {
		out, errOut, code := d.cli(args...)
		if code != 0 || (!strings.Contains(out+errOut, "Usage") && !strings.Contains(out+errOut, "-config")) {
			t.Errorf("provisioner %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}

	// The revoked user's creds stop working.
	d.mustCLI("user", "revoke", "cli", "alice")
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := d.nats(10*time.Second, creds, "pub", "orders.new", "hi")
		if strings.Contains(strings.ToLower(out), "authorization violation") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats pub with revoked creds, 5s after user revoke:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.mustCLI("account", "delete", "cli")
	if out := d.mustCLI("account", "list"); out != "No accounts.\n" {
		t.Errorf("account list after the delete:\n%s", out)
	}
}

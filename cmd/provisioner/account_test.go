package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
)

func TestAccountCommands(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})

	// Flags after the name, sizes with units.
	out := c.mustRun(t, "account", "create", "acme", "--conn", "10", "--disk-storage", "1G", "--payload", "512K",
		"--tag", "tier:gold", "--tag", "region:eu", "--description", "the acme account")
	if !strings.HasPrefix(out, "Created account acme (A") || !strings.Contains(out, "SERVER") || !strings.Contains(out, " 200 ") {
		t.Errorf("account create printed:\n%s", out)
	}

	var got api.AccountReply
	decodeJSON(t, c.mustRun(t, "account", "get", "acme", "--json"), &got)
	ac := got.Account.Claims
	if ac == nil || ac.Limits.Conn != 10 || ac.Limits.DiskStorage != 1<<30 || ac.Limits.Payload != 512<<10 || ac.Limits.Subs != -1 {
		t.Fatalf("account get --json: %+v", got.Account)
	}
	if ac.Description != "the acme account" || !ac.Tags.Contains("tier:gold") || !ac.Tags.Contains("region:eu") {
		t.Errorf("description %q tags %v", ac.Description, ac.Tags)
	}
	pub := got.Account.PublicKey

	out = c.mustRun(t, "account", "get", pub)
	for _, want := range []string{"Name           acme", "Public key     " + pub, "Connections    10", "Subscriptions  unlimited",
		"Payload        512K", "JetStream      memory 0, disk 1G", "Tags           tier:gold, region:eu", "Description    the acme account"} {
		if !strings.Contains(out, want) {
			t.Errorf("account get lacks %q:\n%s", want, out)
		}
	}

	// Only the flags given change.
	out = c.mustRun(t, "account", "update", "acme", "--subs", "5", "--tag", "tier:silver")
	if !strings.HasPrefix(out, "Updated account acme ("+pub+")") {
		t.Errorf("account update printed:\n%s", out)
	}
	var upd api.AccountReply
	decodeJSON(t, c.mustRun(t, "account", "update", "acme", "--conn", "-1", "--json"), &upd)
	uc, err := jwt.DecodeAccountClaims(upd.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Limits.Subs != 5 || uc.Limits.Conn != -1 || uc.Limits.DiskStorage != 1<<30 || uc.Description != "the acme account" ||
		len(uc.Tags) != 1 || !uc.Tags.Contains("tier:silver") {
		t.Errorf("after the updates: subs %d conn %d disk %d description %q tags %v", uc.Limits.Subs, uc.Limits.Conn, uc.Limits.DiskStorage, uc.Description, uc.Tags)
	}

	c.mustRun(t, "account", "create", "beta")
	out = c.mustRun(t, "account", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "acme ") || !strings.HasPrefix(lines[2], "beta ") {
		t.Errorf("account list printed:\n%s", out)
	}
	var list api.ListAccountsReply
	decodeJSON(t, c.mustRun(t, "account", "list", "--json"), &list)
	if list.Total != 2 || len(list.Accounts) != 2 || list.Accounts[0].PublicKey != pub {
		t.Errorf("account list --json: %+v", list)
	}

	var del api.DeleteAccountReply
	decodeJSON(t, c.mustRun(t, "account", "delete", "beta", "--json"), &del)
	if !strings.HasPrefix(del.Deleted, "A") || len(del.Resolver) != 1 {
		t.Errorf("account delete --json: %+v", del)
	}
	out = c.mustRun(t, "account", "delete", "acme")
	if !strings.HasPrefix(out, "Deleted account "+pub) {
		t.Errorf("account delete printed:\n%s", out)
	}
	if out := c.mustRun(t, "account", "list"); out != "No accounts.\n" {
		t.Errorf("account list of none printed %q", out)
	}
	decodeJSON(t, c.mustRun(t, "account", "list", "--json"), &list)
	if list.Total != 0 || list.Accounts == nil {
		t.Errorf("account list --json of none: %+v", list)
	}
}

// TestAccountServiceErrors: what the service refuses is printed with its
// description and code, and exits 1.
func TestAccountServiceErrors(t *testing.T) {
	t.Parallel()
	// The server's resolver holds three accounts: the system account, the
	// service's own and "taken"; it refuses a fourth.
	c := newCLI(t, bootstrap.Options{NoDelete: true, ResolverLimit: 3})
	c.mustRun(t, "account", "create", "taken")
	tests := []struct {
		name     string
		args     []string
		code     string
		mentions string
	}{
		{"unknown", []string{"account", "get", "nobody"}, "404", "nobody"},
		{"unknown, --json", []string{"account", "get", "nobody", "--json"}, "404", "nobody"},
		{"duplicate", []string{"account", "create", "taken"}, "409", "taken"},
		{"empty name", []string{"account", "create", ""}, "400", "name"},
		{"system account", []string{"account", "update", c.env.Init.SystemAccount, "--conn", "1"}, "403", "system account"},
		{"refused by the server", []string{"account", "create", "one-too-many"}, "502", "jwt store is full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := c.run(t, tt.args...)
			wantServiceError(t, err, tt.code, tt.mentions)
			if out != "" {
				t.Errorf("stdout %q on an error", out)
			}
		})
	}

	// With allow_delete off the servers keep the disabled version: that is
	// the end of a delete, not an error.
	t.Run("delete where servers do not allow deletes", func(t *testing.T) {
		var del api.DeleteAccountReply
		decodeJSON(t, c.mustRun(t, "account", "delete", "taken", "--json"), &del)
		if !strings.HasPrefix(del.Deleted, "A") || del.Phase != api.PhaseDeleted || len(del.Waiting) != 0 {
			t.Errorf("account delete --json: %+v, want phase %q", del, api.PhaseDeleted)
		}
	})
}

// TestAccountGetTieredJetStream: an account whose JetStream limits are per
// replica tier (tiered_limits, which the API takes) has JetStream on, and
// account get must say so rather than print "off" from the empty flat
// limits.
func TestAccountGetTieredJetStream(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	one, disk := int64(1), int64(1<<30)
	mem := int64(256 << 20)
	_, err := client.New(c.env.Admin(t)).CreateAccount(context.Background(), api.CreateAccountRequest{
		Name:   "tiered",
		Limits: &api.AccountLimits{TieredLimits: map[string]api.JetStreamLimits{"R1": {DiskStorage: &disk, MemStorage: &mem, Streams: &one}}},
	})
	if err != nil {
		t.Fatalf("CreateAccount with tiered limits: %v", err)
	}
	out := c.mustRun(t, "account", "get", "tiered")
	if strings.Contains(out, "JetStream      off") {
		t.Errorf("account get says JetStream is off for an account with tiered JetStream limits:\n%s", out)
	}
	if !strings.Contains(out, "R1") || !strings.Contains(out, "disk 1G") || !strings.Contains(out, "memory 256M") {
		t.Errorf("account get lacks the R1 tier's limits:\n%s", out)
	}
}

// TestAccountDeleteNamesTheImportsItCuts: deleting an account whose export
// another account imports prints the import it cut off.
func TestAccountDeleteNamesTheImportsItCuts(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	cl := client.New(c.env.Admin(t))
	ctx := context.Background()
	if _, err := cl.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: jwt.Exports{{Name: "feed", Subject: "alpha.feed.>", Type: jwt.Stream}}}); err != nil {
		t.Fatal(err)
	}
	beta, err := cl.CreateAccount(ctx, api.CreateAccountRequest{Name: "beta", Imports: jwt.Imports{{Name: "alpha-feed", Subject: "alpha.feed.>", Account: "alpha", Type: jwt.Stream}}})
	if err != nil {
		t.Fatal(err)
	}
	out := c.mustRun(t, "account", "delete", "alpha")
	if !strings.Contains(out, "cut off 1 imports") || !strings.Contains(out, "beta ("+beta.Account.PublicKey+")") || !strings.Contains(out, "alpha-feed") || !strings.Contains(out, "alpha.feed.>") {
		t.Errorf("account delete of an exporter printed:\n%s", out)
	}
}

// TestChangeWhoseOutputCannotBeWrittenFails: a change the service made,
// printed to a stdout that fails (a full disk, a closed pipe). The
// printers ignored the write errors: nothing printed, exit 0, and a
// script went on as if all was well with no record of what was done. It
// fails, exit 2, saying the change was made (so that it is not retried
// blindly), and the change is there.
func TestChangeWhoseOutputCannotBeWrittenFails(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "gone")
	c.mustRun(t, "account", "create", "keep")
	c.mustRun(t, "user", "create", "keep", "alice", "-o", t.TempDir()+"/alice.creds")
	for _, tc := range []struct {
		args  []string
		wants string
	}{
		{[]string{"account", "create", "acme"}, "account create: account acme was created"},
		{[]string{"account", "create", "acme2", "--json"}, "account create: account acme2 was created"},
		{[]string{"account", "update", "acme", "--conn", "7"}, "account update: account acme was updated"},
		{[]string{"user", "revoke", "keep", "alice"}, "user revoke: user U"},
		{[]string{"account", "delete", "gone"}, "account delete: account A"},
	} {
		var stderr bytes.Buffer
		err := run(context.Background(), append(tc.args, c.conn...), failingWriter{}, &stderr)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.wants) || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("%s to a failing stdout: %v (exit %d), want exit 2 and %q", strings.Join(tc.args, " "), err, exitCode(err), tc.wants)
		}
	}
	// A closed pipe: the process was killed by SIGPIPE at the write,
	// saying nothing.
	if code, stderr := c.runToClosedPipe(t, "account", "create", "piped"); code != 2 || !strings.Contains(stderr, "account create: account piped was created") {
		t.Errorf("account create into a closed pipe: exit %d, want exit 2 saying it was created\n%s", code, stderr)
	}
	var acme api.AccountReply
	decodeJSON(t, c.mustRun(t, "account", "get", "acme", "--json"), &acme)
	if acme.Account.Claims == nil || acme.Account.Claims.Limits.Conn != 7 {
		t.Errorf("acme after its update: %+v", acme.Account)
	}
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", "keep", "--json"), &list)
	if len(list.Users) != 1 || !list.Users[0].Revoked {
		t.Errorf("alice after her revoke: %+v", list.Users)
	}
}

// runToClosedPipe runs the real binary with args and the connection flags,
// its stdout a pipe whose reader has gone, and returns its exit code (-1
// for a death by signal) and its stderr.
func (c *cli) runToClosedPipe(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "provisioner")
	copyBinary(t, bin)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := exec.Command(bin, append(args, c.conn...)...)
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatal(err)
	return 0, ""
}

// TestDeleteLeftDisabledSaysWhatFollows: a delete left disabled with no
// server waited for (its last store write failed, or the account changed
// under it: the reconciler finishes it) printed "the DELETE follows once
// confirm", naming nobody.
func TestDeleteLeftDisabledSaysWhatFollows(t *testing.T) {
	for _, tc := range []struct {
		waiting []string
		want    string
	}{
		{nil, "the reconciler finishes the delete"},
		{[]string{"n1", "n2"}, "the DELETE follows once n1, n2 confirm (the reconciler sees to it)"},
	} {
		if got := deleteFollows(tc.waiting); got != tc.want {
			t.Errorf("waiting for %v: %q, want %q", tc.waiting, got, tc.want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// readCreds returns a creds file's JWT claims and seed.
func readCreds(t *testing.T, creds []byte) (*jwt.UserClaims, string) {
	t.Helper()
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		t.Fatalf("creds: %v\n%s", err, creds)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatalf("creds JWT: %v", err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(creds)
	if err != nil {
		t.Fatalf("creds seed: %v", err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	if pub != uc.Subject {
		t.Fatalf("the creds' seed is of %s, its JWT of %s", pub, uc.Subject)
	}
	return uc, string(seed)
}

// userCount is how many users the account has.
func (c *cli) userCount(t *testing.T, account string) int {
	t.Helper()
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", account, "--json"), &list)
	return list.Total
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	dir := t.TempDir()

	// -o writes a 0600 creds file that connects; the seed is shown nowhere.
	alice := filepath.Join(dir, "alice.creds")
	out, errOut, err := c.run(t, "user", "create", "acme", "alice", "-o", alice, "--expires-in", "24h",
		"--pub-allow", "orders.>", "--sub-allow", "_INBOX.>", "--sub-deny", "secret.>")
	if err != nil {
		t.Fatalf("user create -o: %v\n%s", err, errOut)
	}
	fi, err := os.Stat(alice)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file: %v, mode %v, want 0600", err, fi.Mode())
	}
	creds, _ := os.ReadFile(alice)
	uc, seed := readCreds(t, creds)
	for _, want := range []string{"Issued user  alice", "Public key   " + uc.Subject, "Account      acme", "Expires      ", "Creds file   " + alice} {
		if !strings.Contains(out, want) {
			t.Errorf("user create -o printed no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+errOut, seed) {
		t.Fatalf("the seed was printed")
	}
	if uc.Name != "alice" || uc.Expires < time.Now().Add(23*time.Hour).Unix() || !uc.Pub.Allow.Contains("orders.>") || !uc.Sub.Deny.Contains("secret.>") {
		t.Errorf("alice's JWT: name %q expires %d pub %+v sub %+v", uc.Name, uc.Expires, uc.Pub, uc.Sub)
	}
	// A publish the server refuses returns nil and so does the flush: the
	// refusal is the -ERR the server sends before the flush's PONG, which
	// the connection keeps as its last error.
	nc := c.env.Connect(t, alice)
	if err := nc.Publish("orders.new", nil); err != nil || nc.Flush() != nil || nc.LastError() != nil {
		t.Errorf("alice cannot publish on orders.new: %v, last error %v", err, nc.LastError())
	}

	// The file is never overwritten, and nothing is issued.
	_, _, err = c.run(t, "user", "create", "acme", "alice2", "-o", alice)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("user create -o onto an existing file: %v", err)
	}
	if after, _ := os.ReadFile(alice); !bytes.Equal(after, creds) {
		t.Errorf("the existing creds file changed")
	}
	if n := c.userCount(t, "acme"); n != 1 {
		t.Errorf("%d users after a refused create, want 1", n)
	}

	// Without -o, the creds go to stdout (not a terminal here) and the
	// summary to stderr.
	out, errOut, err = c.run(t, "user", "create", "acme", "bob", "--bearer")
	if err != nil {
		t.Fatalf("user create to stdout: %v\n%s", err, errOut)
	}
	bobClaims, bobSeed := readCreds(t, []byte(out))
	if !strings.HasPrefix(out, "-----BEGIN NATS USER JWT-----") || !bobClaims.BearerToken {
		t.Errorf("user create --bearer to stdout printed:\n%s", out)
	}
	if !strings.Contains(errOut, "Issued user  bob") || !strings.Contains(errOut, "Bearer") || strings.Contains(errOut, bobSeed) {
		t.Errorf("stderr:\n%s", errOut)
	}
	c.env.Connect(t, writeFile(t, out)).Close()

	// --json without -o is the reply with the seed and creds, as the
	// service's own reply would be.
	var rep api.CreateUserReply
	decodeJSON(t, c.mustRun(t, "user", "create", "acme", "carol", "--json"), &rep)
	kp, err := nkeys.FromSeed([]byte(rep.User.Seed))
	if err != nil {
		t.Fatalf("user create --json: seed %v", err)
	}
	if pub, _ := kp.PublicKey(); pub != rep.User.PublicKey || !strings.Contains(rep.User.Creds, rep.User.JWT) {
		t.Errorf("user create --json: %+v", rep.User)
	}
	c.env.Connect(t, writeFile(t, rep.User.Creds)).Close()

	// --json with -o: the JSON holds no secret.
	dave := filepath.Join(dir, "dave.creds")
	out = c.mustRun(t, "user", "create", "acme", "dave", "-o", dave, "--json")
	rep = api.CreateUserReply{}
	decodeJSON(t, out, &rep)
	daveCreds, _ := os.ReadFile(dave)
	_, daveSeed := readCreds(t, daveCreds)
	if rep.User.Seed != "" || rep.User.Creds != "" || rep.User.Name != "dave" || strings.Contains(out, daveSeed) {
		t.Errorf("user create -o --json printed:\n%s", out)
	}
	c.env.Connect(t, dave).Close()

	// A terminal does not get a seed unasked (/dev/null is a character
	// device, as a terminal is), and nothing is issued.
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var stderr bytes.Buffer
	err = run(context.Background(), append([]string{"user", "create", "acme", "erin"}, c.conn...), tty, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "-o FILE") {
		t.Errorf("user create to a terminal: %v", err)
	}
	if n := c.userCount(t, "acme"); n != 4 {
		t.Errorf("%d users, want 4 (alice, bob, carol, dave)", n)
	}

	// A refused create leaves no file behind.
	ghost := filepath.Join(dir, "ghost.creds")
	_, _, err = c.run(t, "user", "create", "nobody", "ghost", "-o", ghost)
	wantServiceError(t, err, "404", "nobody")
	if _, err := os.Stat(ghost); !os.IsNotExist(err) {
		t.Errorf("a refused create left %s: %v", ghost, err)
	}
	_, _, err = c.run(t, "user", "create", c.env.Init.SystemAccount, "intruder", "-o", ghost)
	wantServiceError(t, err, "403", "system account")

	// The list, as a table and as JSON.
	out = c.mustRun(t, "user", "list", "acme")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// Users issued in the same second are listed by public key.
	aliceAt := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "alice ") })
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NAME") || aliceAt < 1 || !strings.HasSuffix(lines[aliceAt], " no") {
		t.Errorf("user list printed:\n%s", out)
	}
	c.mustRun(t, "account", "create", "empty")
	if out := c.mustRun(t, "user", "list", "empty"); out != "No users.\n" {
		t.Errorf("user list of none printed %q", out)
	}

	// Revoke by name: alice is cut off.
	out = c.mustRun(t, "user", "revoke", "acme", "alice")
	if !strings.HasPrefix(out, "Revoked user "+uc.Subject+" in account acme (A") {
		t.Errorf("user revoke printed:\n%s", out)
	}
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", "acme", "--json"), &list)
	// The loop checks only the users listed: an empty list passed it.
	if len(list.Users) != 4 || !slices.ContainsFunc(list.Users, func(u api.UserSummary) bool { return u.Name == "alice" }) {
		t.Errorf("user list after the revoke: %+v, want alice, bob, carol and dave", list.Users)
	}
	for _, u := range list.Users {
		if u.Revoked != (u.Name == "alice") {
			t.Errorf("user list after the revoke: %+v", list.Users)
		}
	}
	if nc, err := nats.Connect(c.env.Server.URL(), nats.UserCredentials(alice)); err == nil {
		nc.Close()
		t.Errorf("alice connects after the revoke")
	}
	var rev api.RevokeUserReply
	decodeJSON(t, c.mustRun(t, "user", "revoke", "acme", bobClaims.Subject, "--json"), &rev)
	if rev.Revoked != bobClaims.Subject {
		t.Errorf("user revoke --json: %+v", rev)
	}
	_, _, err = c.run(t, "user", "revoke", "acme", "nobody")
	wantServiceError(t, err, "404", "nobody")
}

// TestUserListShowsExpiredUsers: the table had no expired column, so a user
// whose JWT had expired (and whose revocation, if any, was dropped once it
// could no longer matter) showed "REVOKED no" with a past expiry, which
// reads as active. The reply's "expired" is shown.
func TestUserListShowsExpiredUsers(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	c.mustRun(t, "user", "create", "acme", "brief", "--expires-in", "1s", "-o", filepath.Join(t.TempDir(), "brief.creds"))
	c.mustRun(t, "user", "create", "acme", "steady", "-o", filepath.Join(t.TempDir(), "steady.creds"))
	// Until brief's JWT has expired (its exp is a whole second, at most
	// 1 s away): the list asked then must show it, and steady not.
	var out string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out = c.mustRun(t, "user", "list", "acme")
		if briefExpired(out) || time.Now().After(deadline) {
			break
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "EXPIRED") {
		t.Fatalf("user list printed no EXPIRED column:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		// NAME, PUBLIC KEY, ISSUED, EXPIRES, EXPIRED, REVOKED
		if len(f) != 6 || f[4] != map[string]string{"brief": "yes", "steady": "no"}[f[0]] || f[5] != "no" {
			t.Errorf("user list row %q, want brief expired and steady not, neither revoked:\n%s", l, out)
		}
	}
}

// briefExpired tells whether a user list shows brief expired.
func briefExpired(out string) bool {
	for l := range strings.Lines(out) {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "brief" && f[4] == "yes" {
			return true
		}
	}
	return false
}

// writeFile writes creds into a 0600 temp file.
func writeFile(t *testing.T, creds string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(p, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// failingWriter fails every write, like a closed pipe or a full disk.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestUserCreateLostCreds: when the creds cannot be written after the user
// was issued, the error says so and gives the command that revokes it; the
// command works.
func TestUserCreateLostCreds(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	var stderr bytes.Buffer
	err := run(context.Background(), append([]string{"user", "create", "acme", "alice"}, c.conn...), failingWriter{}, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "was issued, but its creds could not be written") || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("got %v", err)
	}
	_, line, ok := strings.Cut(err.Error(), "revoke it with: provisioner ")
	if !ok {
		t.Fatalf("no revoke command in %q", err)
	}
	out := c.mustRun(t, strings.Fields(line)...)
	if !strings.HasPrefix(out, "Revoked user U") {
		t.Fatalf("the given revoke command printed:\n%s", out)
	}
	var list api.ListUsersReply
	decodeJSON(t, c.mustRun(t, "user", "list", "acme", "--json"), &list)
	if len(list.Users) != 1 || !list.Users[0].Revoked {
		t.Errorf("after the revoke: %+v", list.Users)
	}
}

// TestUserCreateLostCredsQuotesTheAccount: the revoke command the error
// gives is pasted into a shell. With an account name holding a space and
// a quote, it named the account unquoted, which the shell split: the
// command revoked nothing. The account is quoted, and the command, as the
// shell reads it, revokes the user.
func TestUserCreateLostCredsQuotesTheAccount(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	const account = "acme's corp"
	c.mustRun(t, "account", "create", account)
	var stderr bytes.Buffer
	err := run(context.Background(), append([]string{"user", "create", account, "alice"}, c.conn...), failingWriter{}, &stderr)
	_, line, ok := strings.Cut(fmt.Sprint(err), "revoke it with: ")
	if !ok {
		t.Fatalf("no revoke command in %v", err)
	}
	words, err := exec.Command("sh", "-c", "set -- "+line+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh reads %q: %v", line, err)
	}
	args := strings.Split(strings.TrimSuffix(string(words), "\x00"), "\x00")
	if len(args) != 5 || args[0] != "provisioner" || args[3] != account {
		t.Fatalf("the shell reads the command %q as %q", line, args)
	}
	if rep := c.mustRun(t, args[1:]...); !strings.HasPrefix(rep, "Revoked user "+args[4]) {
		t.Fatalf("the given revoke command printed:\n%s", rep)
	}
}

// TestUserCreateInARole: --role issues the user with the role's scoped key,
// and the server holds it to the role's template.
func TestUserCreateInARole(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	admin := c.env.Admin(t)
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme","roles":{"device":{"pub":{"allow":["telemetry.>"]}}}}`); r.Code != 0 {
		t.Fatal(r.Description)
	}
	creds := filepath.Join(t.TempDir(), "d1.creds")
	c.mustRun(t, "user", "create", "acme", "d1", "--role", "device", "-o", creds)
	raw, err := os.ReadFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	got := provtest.Request(t, admin, "prov.account.get", `{"account":"acme"}`)
	ac, err := jwt.DecodeAccountClaims(got.Body["account"].(map[string]any)["jwt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	scope, ok := ac.SigningKeys.GetScope(uc.Issuer)
	if !ok || scope == nil || scope.(*jwt.UserScope).Role != "device" {
		t.Fatalf("the user was signed by %s, not the device role's scoped key", uc.Issuer)
	}
	if _, _, err := c.run(t, "user", "create", "acme", "d2", "--role", "nope"); err == nil {
		t.Error("a role the account lacks was accepted")
	}
}

// TestUserCreateCredsFileAppearsWhole: the creds file of -o appears only
// once it holds the whole creds, as every file the project writes
// (safefile.WriteNew): not as an empty file while the request is in
// flight, which a kill or a crash would leave behind (and which then
// blocks a new try with "exists"), and which a reader watching the path
// would take for the creds.
func TestUserCreateCredsFileAppearsWhole(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	dir := t.TempDir()
	out := filepath.Join(dir, "alice.creds")

	// A second subscriber on the service's subject sees the request at the
	// moment it is sent, and looks at the path then.
	seen := make(chan string, 1)
	obs := c.env.Connect(t, c.env.Init.ProvisionerCreds)
	sub, err := obs.Subscribe(api.Subject(api.DefaultPrefix, api.SubjectUserCreate), func(*nats.Msg) {
		fi, err := os.Lstat(out)
		switch {
		case err != nil:
			seen <- "absent"
		default:
			seen <- fmt.Sprintf("present, %d bytes", fi.Size())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	c.mustRun(t, "user", "create", "acme", "alice", "-o", out)
	if got := <-seen; got != "absent" {
		t.Errorf("while the request was in flight the creds file was %s, want absent", got)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("creds file: %v, %v", err, fi)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the creds directory holds %d entries, want only the creds file: %v", len(entries), entries)
	}
}

// TestUserCreateOutputErrorNamesThePath: a -o path that cannot be written
// (its directory missing) is refused naming that path, as before the creds
// went through a temp file: the error named the hidden temp file's pattern
// (".alice.creds.tmp*", "createtemp"), a file the user never asked for.
func TestUserCreateOutputErrorNamesThePath(t *testing.T) {
	out := filepath.Join(t.TempDir(), "missing", "alice.creds")
	err := run(context.Background(), []string{"user", "create", "acme", "alice", "-o", out}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil {
		t.Fatal("user create -o into a missing directory succeeded")
	}
	if !strings.Contains(err.Error(), out) || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("user create -o %s: %v, want the path named, not the temp file", out, err)
	}
	if _, serr := os.Stat(filepath.Dir(out)); serr == nil {
		t.Errorf("the missing directory was made")
	}
}

// TestUserCreateLongFileName: a -o name that fits the file system (255
// bytes) is written, though the temp file beside it, "." NAME ".tmp" and
// digits, would not fit: it was refused as "file name too long", naming
// the path given.
func TestUserCreateLongFileName(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	dir := t.TempDir()
	out := filepath.Join(dir, strings.Repeat("a", 249)+".creds")
	c.mustRun(t, "user", "create", "acme", "alice", "-o", out)
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("creds file: %v, %v", err, fi)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the creds directory holds %d entries, want only the creds file: %v", len(entries), entries)
	}
}

// TestUserCreateToAClosedPipeGivesTheRevokeCommand: the creds go to
// stdout, a pipe whose reader is gone (`| head -c0`, a consumer that
// failed). The runtime killed the process with SIGPIPE at the write: the
// user was issued, nobody held its key, and nothing said which key to
// revoke. The write fails instead, and the error gives the command that
// revokes it, exit 2.
func TestUserCreateToAClosedPipeGivesTheRevokeCommand(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	code, stderr := c.runToClosedPipe(t, "user", "create", "acme", "alice")
	if code != 2 {
		t.Fatalf("user create into a closed pipe: exit %d, want exit 2\n%s", code, stderr)
	}
	_, line, ok := strings.Cut(stderr, "revoke it with: provisioner ")
	if !ok {
		t.Fatalf("no revoke command in %q", stderr)
	}
	if out := c.mustRun(t, strings.Fields(line)...); !strings.HasPrefix(out, "Revoked user U") {
		t.Fatalf("the given revoke command printed:\n%s", out)
	}
}

// TestUserCreateRedirectedToAFileOthersMayRead: the creds redirected to a
// file (`> ci-bot.creds`, as the command's own example does) went into
// the file the shell made, 0644 under the usual umask: the seed readable
// by every user of the machine, where -o writes 0600. The file is
// restricted to its owner before anything is issued.
func TestUserCreateRedirectedToAFileOthersMayRead(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	path := filepath.Join(t.TempDir(), "ci-bot.creds")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Chmod(0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if err := run(context.Background(), append([]string{"user", "create", "acme", "ci-bot"}, c.conn...), f, &stderr); err != nil {
		t.Fatalf("user create > file: %v\n%s", err, stderr.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := os.ReadFile(path)
	readCreds(t, creds)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("the creds file stdout went to is %v, want 0600", fi.Mode().Perm())
	}
}

// TestUserCreateToAFileWhoseReportCannotBeWritten: user create -o FILE
// wrote the creds, then printed what was issued to a stdout that fails (a
// full disk, a closed pipe). The error was ignored: exit 0 with nothing
// printed, and with --json the bare write error, exit 2, which reads as a
// user never issued. It fails, exit 2, saying the user was issued and
// where its creds are, with the command that revokes it if unwanted.
func TestUserCreateToAFileWhoseReportCannotBeWritten(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	c.mustRun(t, "account", "create", "acme")
	dir := t.TempDir()
	for i, extra := range [][]string{nil, {"--json"}} {
		path := filepath.Join(dir, fmt.Sprintf("u%d.creds", i))
		args := append([]string{"user", "create", "acme", fmt.Sprintf("u%d", i), "-o", path}, extra...)
		var stderr bytes.Buffer
		err := run(context.Background(), append(args, c.conn...), failingWriter{}, &stderr)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "was issued and its creds written to "+path) || !strings.Contains(err.Error(), "no space left") {
			t.Errorf("%v to a failing stdout: %v (exit %d)", extra, err, exitCode(err))
			continue
		}
		creds, rerr := os.ReadFile(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		uc, _ := readCreds(t, creds)
		if want := "provisioner user revoke acme " + uc.Subject; !strings.Contains(err.Error(), want) {
			t.Errorf("%v: no %q in %q", extra, want, err)
		}
	}
	if n := c.userCount(t, "acme"); n != 2 {
		t.Errorf("%d users issued, want 2", n)
	}
}

// TestUserCreateLostCredsRevokesDashAccount: an account's name may begin
// with "-". The revoke command the error gives named it as it is, and the
// CLI read "-ops" as a flag: the pasted command revoked nothing, though
// nobody holds the issued user's key. It names the account by its public
// key, which no flag parse takes for a flag.
func TestUserCreateLostCredsRevokesDashAccount(t *testing.T) {
	t.Parallel()
	c := newCLI(t, bootstrap.Options{})
	const account = "-ops"
	if _, _, err := runCmd(t, append(append([]string{"account", "create"}, c.conn...), "--", account)...); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	err := run(context.Background(), append(append([]string{"user", "create"}, c.conn...), "--", account, "alice"), failingWriter{}, &stderr)
	_, line, ok := strings.Cut(fmt.Sprint(err), "revoke it with: ")
	if !ok {
		t.Fatalf("no revoke command in %v", err)
	}
	words, err := exec.Command("sh", "-c", "set -- "+line+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh reads %q: %v", line, err)
	}
	args := strings.Split(strings.TrimSuffix(string(words), "\x00"), "\x00")
	if len(args) < 5 || args[0] != "provisioner" {
		t.Fatalf("the shell reads the command %q as %q", line, args)
	}
	out, errOut, err := c.run(t, args[1:]...)
	if err != nil || !strings.HasPrefix(out, "Revoked user "+args[len(args)-1]) {
		t.Fatalf("the given revoke command %q: %v\n%s%s", line, err, out, errOut)
	}
	// A key in doubt has no JWT to name the account by: the command puts
	// it after "--", the connection flags going before.
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	_, line, _ = strings.Cut(inDoubt(account, &client.UserInDoubtError{PublicKey: pub, Err: context.DeadlineExceeded}).Error(), "with: provisioner ")
	words, err = exec.Command("sh", "-c", "set -- "+line+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh reads %q: %v", line, err)
	}
	args = strings.Split(strings.TrimSuffix(string(words), "\x00"), "\x00")
	if len(args) < 2 || args[0] != "user" || args[1] != "revoke" {
		t.Fatalf("the shell reads the command %q as %q", line, args)
	}
	out, errOut, err = runCmd(t, append(append([]string{"user", "revoke"}, c.conn...), args[2:]...)...)
	if err != nil || !strings.HasPrefix(out, "Revoked user "+pub) {
		t.Fatalf("the revoke command of a key in doubt %q: %v\n%s%s", line, err, out, errOut)
	}
}

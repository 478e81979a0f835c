package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/safefile"
)

// runUser is "provisioner user VERB": users of accounts, through the
// service.
func runUser(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return dispatch(ctx, "user", "issue, list and revoke the users of an account through the provisioning service", []subcommand{
		{"create", "issue a user; its key is made here and its creds written locally", runUserCreate},
		{"list", "list the users issued under an account", runUserList},
		{"revoke", "revoke a user: its connections close and it cannot connect again", runUserRevoke},
	}, args, stdout, stderr)
}

func runUserCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("user create", "issue a user; its key is made on this machine and only the public key is sent",
		"provisioner user create ACCOUNT NAME [-o FILE] [flags]",
		"provisioner user create acme alice -o alice.creds --expires-in 720h --pub-allow 'orders.>' --sub-allow '_INBOX.>'\n"+
			"provisioner user create acme ci-bot > ci-bot.creds")
	out := cmd.String("o", "", "write the creds to `FILE` (0600, never overwritten); \"-\" for stdout. Without -o the creds go to stdout, unless it is a terminal")
	expires := cmd.String("expires-in", "", "the JWT expires after this `DURATION`, such as 24h (default: never)")
	var pubAllow, pubDeny, subAllow, subDeny, tags stringList
	cmd.Var(&pubAllow, "pub-allow", "a `SUBJECT` the user may publish to; repeat for more (default: the account's default permissions)")
	cmd.Var(&pubDeny, "pub-deny", "a `SUBJECT` the user may not publish to; repeat for more")
	cmd.Var(&subAllow, "sub-allow", "a `SUBJECT` the user may subscribe to; repeat for more")
	cmd.Var(&subDeny, "sub-deny", "a `SUBJECT` the user may not subscribe to; repeat for more")
	cmd.Var(&tags, "tag", "a `TAG` of the user; repeat for more")
	bearer := cmd.Bool("bearer", false, "issue a bearer token: the JWT alone connects, without proving the key")
	role := cmd.String("role", "", "issue the user in one of the account's roles (`ROLE`): its template gives the permissions and limits")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT", "NAME"); err != nil {
		return err
	}
	req := api.CreateUserRequest{Account: cmd.Arg(0), Name: cmd.Arg(1), BearerToken: *bearer, Tags: tags, Role: *role}
	if *expires != "" {
		if d, err := time.ParseDuration(*expires); err != nil || d <= 0 {
			return fmt.Errorf("user create: --expires-in must be a positive duration such as 24h or 90m, got %q", *expires)
		}
		req.ExpiresIn = *expires
	}
	if pubAllow != nil || pubDeny != nil || subAllow != nil || subDeny != nil {
		req.Permissions = &api.Permissions{
			Pub: jwt.Permission{Allow: jwt.StringList(pubAllow), Deny: jwt.StringList(pubDeny)},
			Sub: jwt.Permission{Allow: jwt.StringList(subAllow), Deny: jwt.StringList(subDeny)},
		}
	}

	// Where the creds go is settled before anything is issued: a key that
	// cannot be written anywhere would make a user nobody can use.
	toStdout := *out == "" || *out == "-"
	if *out == "" && isTerminal(stdout) {
		return errors.New("user create: the creds hold the user's secret seed; write them with -o FILE, redirect stdout, or pass -o - to print them here")
	}
	// A stdout redirected to a file (`> ci-bot.creds`, the example above)
	// is a file the shell made, 0644 under the usual umask: the seed
	// would be readable by every user of the machine, where -o writes
	// 0600. It is restricted to its owner first, or nothing is issued.
	if toStdout {
		if err := ownerOnly(stdout); err != nil {
			return fmt.Errorf("user create: stdout is a file others may read, and it could not be made 0600: %w; write the creds with -o FILE", err)
		}
	}
	// The file is written beside its path and linked there once whole
	// (as safefile.WriteNew does): the path never holds an empty or half
	// written creds file, not while the request is in flight, nor after a
	// kill or a crash.
	var file *os.File
	if !toStdout {
		if _, err := os.Lstat(*out); err == nil {
			return fmt.Errorf("user create: %s exists; creds files are never overwritten", *out)
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("user create: %w", err)
		}
		f, err := os.CreateTemp(filepath.Dir(*out), safefile.TempPattern(*out))
		if err != nil {
			// The error is about -o's path: name it, not the temp file
			// the user never asked for.
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("user create: %s: %w", *out, err)
		}
		file = f
		defer func() {
			if file != nil { // not written: leave nothing behind
				file.Close()
				os.Remove(file.Name())
			}
		}()
	}

	c, err := conn.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, done := c.watch(ctx)
	defer done()
	u, err := c.client.CreateUser(ctx, req)
	if err != nil {
		// The client reports the key in doubt for any request the
		// context ended, but a request the server refused to take was
		// never sent: no key to revoke.
		if v := refused(ctx, api.Subject(conn.prefix, api.SubjectUserCreate)); v != nil {
			return fmt.Errorf("user create: the server refused the request, so no user was issued: %w", v)
		}
		return inDoubt(req.Account, c.explain(ctx, err))
	}
	defer u.Wipe()

	// Stdout whose reader is gone (a closed pipe) killed the process with
	// SIGPIPE at the write, before the errors below could name the key
	// issued: with SIGPIPE notified, the write fails with EPIPE instead.
	defer notifySIGPIPE()()
	if file != nil {
		tmp := file.Name()
		if err := writeCreds(file, u.Creds.Bytes()); err != nil {
			return fmt.Errorf("user create: user %s was issued, but its creds could not be written to %s: %w; "+
				"nobody holds its key: revoke it with: %s", u.PublicKey, *out, err, revokeCommand(req.Account, u.JWT, u.PublicKey))
		}
		if err := os.Link(tmp, *out); err != nil {
			// The creds are whole in tmp (0600): keep them there.
			file = nil
			return fmt.Errorf("user create: user %s was issued, but its creds could not be put at %s: %w; they are in %s", u.PublicKey, *out, err, tmp)
		}
		file = nil
		os.Remove(tmp) // *out keeps the file
		if err := syncDir(filepath.Dir(*out)); err != nil {
			return fmt.Errorf("user create: user %s was issued and its creds written to %s, but the directory could not be flushed: %w", u.PublicKey, *out, err)
		}
		// The user is issued and usable: a report that cannot be
		// printed (a full disk, a closed pipe) must not read as exit 0,
		// nor as a bare write error, as if nothing was issued.
		if conn.json {
			err = printJSON(stdout, api.CreateUserReply{User: api.User{Name: u.Name, PublicKey: u.PublicKey, JWT: u.JWT}})
		} else {
			err = printUser(stdout, u, req.Account, "Creds file\t"+*out+"\n")
		}
		if err != nil {
			return fmt.Errorf("user create: user %s was issued and its creds written to %s, but the output could not be written: %w; if it is not wanted, revoke it with: %s",
				u.PublicKey, *out, err, revokeCommand(req.Account, u.JWT, u.PublicKey))
		}
		return nil
	}
	// The creds on stdout, and what was issued on stderr.
	if conn.json {
		err = printJSON(stdout, api.CreateUserReply{User: api.User{
			Name: u.Name, PublicKey: u.PublicKey, JWT: u.JWT, Seed: string(u.Seed.Bytes()), Creds: string(u.Creds.Bytes()),
		}})
	} else {
		_, err = stdout.Write(u.Creds.Bytes())
	}
	if err != nil {
		return fmt.Errorf("user create: user %s was issued, but its creds could not be written: %w; revoke it with: %s",
			u.PublicKey, err, revokeCommand(req.Account, u.JWT, u.PublicKey))
	}
	// The creds are out: a stderr that fails loses only this report.
	_ = printUser(stderr, u, req.Account, "Creds\ton stdout\n")
	return nil
}

// userInDoubtError is a user create whose outcome is unknown (no reply
// in time, the connection gone, a 504): the key sent may be issued yet,
// and nobody holds its seed. Its message names the key and the command
// that revokes it; main exits 1 when the service answered (504), 2 when
// no reply came, as for any other request. Like the other revoke
// commands the errors give, the account is quoted for a shell: a name may
// hold spaces, quotes or '$', and pasted unquoted it named another
// account, or none.
type userInDoubtError struct {
	err     error
	account string
	key     string
}

func (e *userInDoubtError) Error() string {
	return fmt.Sprintf("user create: %v; revoke it, with the connection flags given here, with: %s",
		e.err, revokeCommand(e.account, "", e.key))
}

// revokeCommand is the command that revokes user key of account, quoted
// for a shell. An account whose name begins with "-" ("-ops") is read by
// the command's flag parse as a flag: it is named by its public key, the
// issuer account of the user's JWT when there is one, else after "--"
// (the connection flags then go before it, as usage says flags may).
func revokeCommand(account, userJWT, key string) string {
	if strings.HasPrefix(account, "-") {
		if uc, err := jwt.DecodeUserClaims(userJWT); err == nil && nkeys.IsValidPublicAccountKey(uc.IssuerAccount) {
			return "provisioner user revoke " + uc.IssuerAccount + " " + key
		}
		return "provisioner user revoke -- " + shellQuote(account) + " " + key
	}
	return "provisioner user revoke " + shellQuote(account) + " " + key
}

func (e *userInDoubtError) Unwrap() error { return e.err }

// inDoubt returns err as a *userInDoubtError when the client reports the
// key it sent in doubt, and err unchanged otherwise. Without it a 504 was
// printed as the service's description alone (asServiceError keeps only
// the *client.Error), and the operator never learnt the key to revoke.
func inDoubt(account string, err error) error {
	var doubt *client.UserInDoubtError
	if errors.As(err, &doubt) {
		return &userInDoubtError{err: err, account: account, key: doubt.PublicKey}
	}
	return err
}

// ownerOnly takes the group's and others' permissions away from w when
// it is a regular file that grants them.
func ownerOnly(w io.Writer) error {
	f, ok := w.(*os.File)
	if !ok {
		return nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return f.Chmod(fi.Mode().Perm() &^ 0o077)
}

// syncDir flushes a directory, so that a file linked into it is still
// there after a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeCreds writes and syncs a creds file, then closes it.
func writeCreds(f *os.File, creds []byte) error {
	_, err := f.Write(creds)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// printUser prints what was issued; never the seed. It returns the first
// error writing to w.
func printUser(out io.Writer, u *client.User, account, extra string) error {
	w := &errWriter{w: out}
	tw := table(w)
	fmt.Fprintf(tw, "Issued user\t%s\n", u.Name)
	fmt.Fprintf(tw, "Public key\t%s\n", u.PublicKey)
	uc, err := jwt.DecodeUserClaims(u.JWT)
	if err == nil && uc.IssuerAccount != "" && uc.IssuerAccount != account {
		fmt.Fprintf(tw, "Account\t%s (%s)\n", account, uc.IssuerAccount)
	} else {
		fmt.Fprintf(tw, "Account\t%s\n", account)
	}
	if err == nil {
		if uc.Expires != 0 {
			fmt.Fprintf(tw, "Expires\t%s\n", time.Unix(uc.Expires, 0).UTC().Format(time.RFC3339))
		}
		if uc.BearerToken {
			fmt.Fprintf(tw, "Bearer\tyes: the JWT alone connects\n")
		}
	}
	fmt.Fprint(tw, extra)
	tw.Flush()
	return w.err
}

// isTerminal reports whether w is a terminal (a character device), where
// a seed should not be printed unasked.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func runUserList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("user list", "list the users issued under an account, in issue order",
		"provisioner user list ACCOUNT [flags]",
		"provisioner user list acme")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT"); err != nil {
		return err
	}
	all := func(ctx context.Context, c *client.Client) (api.ListUsersReply, error) {
		users, err := collect(c.Users(ctx, api.ListUsersRequest{Account: cmd.Arg(0)}))
		return api.ListUsersReply{Users: users, Total: len(users)}, err
	}
	return request(ctx, conn, stdout, all, func(w io.Writer, all api.ListUsersReply) error {
		if len(all.Users) == 0 {
			fmt.Fprintln(w, "No users.")
			return nil
		}
		tw := table(w)
		// EXPIRED is the service's "expired": a revocation is dropped once
		// it can no longer matter, so an expired user may show REVOKED no,
		// which alone would read as active.
		fmt.Fprintln(tw, "NAME\tPUBLIC KEY\tISSUED\tEXPIRES\tEXPIRED\tREVOKED")
		for _, u := range all.Users {
			expires := "never"
			if u.ExpiresAt != 0 {
				expires = time.Unix(u.ExpiresAt, 0).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.PublicKey, time.Unix(u.IssuedAt, 0).UTC().Format(time.RFC3339), expires, yesNo(u.Expired), yesNo(u.Revoked))
		}
		return tw.Flush()
	})
}

func runUserRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := newCommand("user revoke", "revoke a user: its connections close and it cannot connect again",
		"provisioner user revoke ACCOUNT USER [flags]    (USER is a U... public key or an active user's name)",
		"provisioner user revoke acme alice")
	conn := addConnFlags(cmd)
	if err := cmd.parse(args, stdout, stderr, "ACCOUNT", "USER"); err != nil {
		return err
	}
	revoke := func(ctx context.Context, c *client.Client) (*api.RevokeUserReply, error) {
		return c.RevokeUser(ctx, api.RevokeUserRequest{Account: cmd.Arg(0), User: cmd.Arg(1)})
	}
	return change(ctx, "user revoke", conn, stdout, revoke, func(w io.Writer, rep *api.RevokeUserReply) error {
		fmt.Fprintf(w, "Revoked user %s in account %s (%s)\n", rep.Revoked, rep.Account.Name, rep.Account.PublicKey)
		printResolver(w, rep.Resolver, rep.ResolverOmitted)
		return nil
	}, func(rep *api.RevokeUserReply) string {
		return fmt.Sprintf("user %s of account %s was revoked", rep.Revoked, rep.Account.Name)
	})
}

// yesNo is a table cell for a flag.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

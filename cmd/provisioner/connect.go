package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/config"
)

// getenv reads the environment; only the connection settings read it.
var getenv = os.Getenv

// connFlags are the connection flags every client command takes, named
// as natscli names them.
type connFlags struct {
	server      string
	creds       string
	inboxPrefix string
	context     string
	prefix      string
	timeout     time.Duration
	json        bool
}

// addConnFlags defines the connection flags on a command, under their own
// title in its help.
func addConnFlags(c *command) *connFlags {
	f := &connFlags{}
	c.group("Connection flags", func(fs *flag.FlagSet) {
		fs.StringVar(&f.server, "server", "", "NATS server `URL` (default: $NATS_URL, the context's url, then "+nats.DefaultURL+")")
		fs.StringVar(&f.creds, "creds", "", "user credentials `FILE` (default: $NATS_CREDS, then the context's creds)")
		fs.StringVar(&f.inboxPrefix, "inbox-prefix", "", "custom inbox `PREFIX` for replies, such as _INBOX_admin (default: the context's inbox_prefix, then the one prefix the creds may subscribe to, then _INBOX)")
		fs.StringVar(&f.context, "context", "", "natscli context `NAME`, or the path of a context .json file (default: $NATS_CONTEXT, then the context selected with nats context select)")
		f.prefix = api.DefaultPrefix
		fs.Var((*prefixFlag)(&f.prefix), "prefix", "subject `PREFIX` of the provisioning service")
		f.timeout = client.DefaultTimeout
		fs.Var((*positiveDuration)(&f.timeout), "timeout", "how long to wait for each reply, a `DURATION`")
	})
	c.BoolVar(&f.json, "json", false, "print the reply as JSON")
	return f
}

// positiveDuration is a duration flag that must be more than 0. The
// client takes a timeout of 0 or less as "the default" (30s): --timeout
// 0 or -1s waited the default, without a word, instead of being refused.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return errors.New("want a positive duration such as 5s or 2m")
	}
	*d = positiveDuration(v)
	return nil
}

// prefixFlag is a subject prefix, checked as the service checks its
// subject_prefix: one with a space, a wildcard or an empty token failed
// as "invalid subject", as no service answering, or as a permissions
// violation on a request the service "may still carry out", none of
// which named the flag.
type prefixFlag string

func (p *prefixFlag) String() string { return string(*p) }
func (p *prefixFlag) Set(s string) error {
	if err := config.CheckSubjectPrefix(s); err != nil {
		return err
	}
	*p = prefixFlag(s)
	return nil
}

// natsContext holds the fields of a natscli context file this command
// reads (jsm.go's natscontext, natscli v0.5.0). Other fields are ignored.
type natsContext struct {
	URL         string `json:"url"`
	Token       string `json:"token"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	NSCLookup   string `json:"nsc"`
	InboxPrefix string `json:"inbox_prefix"`
	UserJWT     string `json:"user_jwt"`
	UserSeed    string `json:"user_seed"`
	TLSFirst    bool   `json:"tls_first"`
	SocksProxy  string `json:"socks_proxy"`
}

// contextPath finds a natscli context: a path ending in .json that
// exists, else $XDG_CONFIG_HOME/nats/context/NAME.json, else
// ~/.config/nats/context/NAME.json.
func contextPath(name string) (string, error) {
	if strings.HasSuffix(name, ".json") {
		if _, err := os.Stat(name); err == nil {
			return name, nil
		}
	}
	if name == "" || strings.ContainsAny(name, `/\`) || strings.Contains(name, "..") {
		return "", fmt.Errorf("context %q: not a context name, nor an existing .json file", name)
	}
	dir, err := configDir()
	if err != nil {
		return "", fmt.Errorf("context %q: %w", name, err)
	}
	return filepath.Join(dir, "nats", "context", name+".json"), nil
}

// configDir is where natscli keeps its contexts and its selection:
// $XDG_CONFIG_HOME, else ~/.config.
func configDir() (string, error) {
	if dir := getenv("XDG_CONFIG_HOME"); dir != "" {
		return dir, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config"), nil
}

// selectedContext returns the context chosen with `nats context select`
// (natscli's nats/context.txt), or "" when none is: natscli connects with
// it when neither --context nor $NATS_CONTEXT names one, and this command
// connected to the default URL instead, without a word.
func selectedContext() string {
	dir, err := configDir()
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(dir, "nats", "context.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// loadContext reads a natscli context. Values that natscli would resolve
// through a scheme this command does not support (op://, nsc://, env://,
// data:) are refused by name rather than used as they are.
func loadContext(name string) (*natsContext, error) {
	path, err := contextPath(name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("context %q: no context file %s", name, path)
		}
		return nil, fmt.Errorf("context %q: %w", name, err)
	}
	var c natsContext
	if err := json.Unmarshal(data, &c); err != nil {
		// The JSON error may quote a part of the file: keep it out.
		return nil, fmt.Errorf("context %q: %s is not a natscli context (invalid JSON)", name, path)
	}
	if c.NSCLookup != "" {
		return nil, fmt.Errorf("context %q: \"nsc\" lookups are not supported; set \"creds\" to a creds file", name)
	}
	if c.SocksProxy != "" {
		return nil, fmt.Errorf("context %q: \"socks_proxy\" is not supported", name)
	}
	for field, p := range map[string]*string{"creds": &c.Creds, "nkey": &c.NKey, "cert": &c.Cert, "key": &c.Key, "ca": &c.CA} {
		if *p, err = contextFile(*p); err != nil {
			return nil, fmt.Errorf("context %q: %q: %w", name, field, err)
		}
		// A file's content where its path goes (a seed, a creds file)
		// would be quoted by the stat or open that fails on it.
		if api.LooksLikeSeed(*p) {
			return nil, fmt.Errorf("context %q: %q holds a seed, not the path of a file: write it to a file only its owner may read (mode 0600) and give that file's path", name, field)
		}
	}
	for field, v := range map[string]string{"password": c.Password, "token": c.Token, "user_jwt": c.UserJWT, "user_seed": c.UserSeed} {
		if s := scheme(v); s != "" {
			return nil, fmt.Errorf("context %q: %q uses the %s: scheme, which this command does not resolve; give the value itself", name, field, s)
		}
	}
	return &c, nil
}

// contextFile turns a context's file reference into a path, as natscli
// does: file:// is stripped, $VARS and a leading ~ are expanded.
func contextFile(ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	if s := scheme(ref); s != "" && s != "file" {
		return "", fmt.Errorf("the %s: scheme is not supported; give a file path", s)
	}
	p := os.Expand(strings.TrimPrefix(ref, "file://"), getenv)
	if strings.HasPrefix(p, "~") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		p = home + p[1:]
	}
	return p, nil
}

// scheme returns the URI scheme natscontext would resolve a value with,
// or "".
func scheme(v string) string {
	for _, s := range []string{"file", "op", "nsc", "env"} {
		if strings.HasPrefix(v, s+"://") {
			return s
		}
	}
	if strings.HasPrefix(v, "data:") {
		return "data"
	}
	return ""
}

// conn is a connection to NATS for the client commands.
type conn struct {
	nc     *nats.Conn
	client *client.Client
	server string
	// asyncErr is the last error the server sent outside a request, such
	// as a permissions violation on the inbox subscription, which
	// otherwise only shows as a timeout.
	mu       sync.Mutex
	asyncErr error
	// stop ends the request under way (watch) at a permissions
	// violation: the server refused its inbox or its subject, so no
	// reply can come, and waiting out --timeout told nothing more.
	stop context.CancelCauseFunc
}

// connect connects as natscli would: each setting comes from its flag,
// else its environment variable, else the context, else the default.
func (f *connFlags) connect() (*conn, error) {
	server, creds, inbox := f.server, f.creds, f.inboxPrefix
	credsFrom := "--creds"
	if server == "" {
		server = getenv("NATS_URL")
	}
	if creds == "" {
		creds, credsFrom = getenv("NATS_CREDS"), "NATS_CREDS"
		// The creds file's content or a seed in the variable (a CI
		// secret put there as it is) would be quoted by the stat that
		// fails on it, as run refuses one on the command line.
		if api.LooksLikeSeed(creds) {
			return nil, errors.New("NATS_CREDS holds a seed, not the path of a creds file: write the creds to a file only its owner may read (mode 0600) and give that file's path")
		}
	}
	name := f.context
	if name == "" {
		name = getenv("NATS_CONTEXT")
	}
	selected := false
	if name == "" {
		name = selectedContext()
		selected = name != ""
	}
	c := &conn{}
	opts := []nats.Option{
		nats.Name("provisioner-cli"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.asyncErr = err
			if c.stop != nil && errors.Is(err, nats.ErrPermissionViolation) {
				c.stop(err)
			}
			c.mu.Unlock()
		}),
	}
	if name != "" {
		ctx, err := loadContext(name)
		if err != nil {
			if selected {
				// natscli fails too rather than dial the default URL;
				// say where the name came from.
				return nil, fmt.Errorf("%w (the context selected with nats context select: name another with --context or $NATS_CONTEXT, or run nats context unselect)", err)
			}
			return nil, err
		}
		server = firstOf(server, ctx.URL)
		inbox = firstOf(inbox, ctx.InboxPrefix)
		switch {
		case creds != "":
		case ctx.User != "":
			opts = append(opts, nats.UserInfo(ctx.User, ctx.Password))
		case ctx.Creds != "":
			creds, credsFrom = ctx.Creds, fmt.Sprintf("context %q: \"creds\"", name)
		case ctx.NKey != "":
			opt, err := nats.NkeyOptionFromSeed(ctx.NKey)
			if err != nil {
				return nil, fmt.Errorf("context %q: \"nkey\": %w", name, err)
			}
			opts = append(opts, opt)
		case ctx.UserJWT != "" && ctx.UserSeed != "":
			// Sent as it is, as the JWT of the CONNECT: a seed there went
			// to the server and into its auth error event (ReadCreds).
			if _, err := jwt.DecodeUserClaims(ctx.UserJWT); err != nil {
				return nil, fmt.Errorf("context %q: \"user_jwt\" is not a user JWT", name)
			}
			opts = append(opts, nats.UserJWTAndSeed(ctx.UserJWT, ctx.UserSeed))
		}
		if ctx.Token != "" {
			opts = append(opts, nats.Token(ctx.Token))
		}
		if ctx.Cert != "" && ctx.Key != "" {
			opts = append(opts, nats.ClientCert(ctx.Cert, ctx.Key))
		}
		if ctx.CA != "" {
			opts = append(opts, nats.RootCAs(ctx.CA))
		}
		if ctx.TLSFirst {
			opts = append(opts, nats.TLSHandshakeFirst())
		}
	}
	server = firstOf(server, nats.DefaultURL)
	if creds != "" {
		opt, err := credsOption(credsFrom, creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
		if inbox == "" {
			inbox = credsInbox(creds)
		}
	}
	if inbox != "" {
		opts = append(opts, nats.CustomInboxPrefix(inbox))
	}
	nc, err := nats.Connect(server, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactURL(server), err)
	}
	c.nc, c.server = nc, server
	c.client = client.New(nc, client.WithPrefix(f.prefix), client.WithTimeout(f.timeout))
	return c, nil
}

// credsOption returns nats.UserCredentials(path) once the file is found to
// be a creds file (config.ReadCreds): nats.go sends a file's first block as
// the JWT of its CONNECT, so a seed file given for creds went to the server
// and into its auth error event. from names where path came from (a flag,
// a variable, a config field) in the error.
func credsOption(from, path string) (nats.Option, error) {
	if _, err := config.ReadCreds(path); err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return nats.UserCredentials(path), nil
}

// credsInbox returns the inbox prefix the user in a creds file must use:
// the creds `provisioner init` writes may subscribe to one inbox prefix
// only (_INBOX_admin.>), so that no other holder reads their replies. When
// the user's subscribe permissions allow exactly one such prefix and not
// _INBOX.>, that prefix; else "" (the default _INBOX).
func credsInbox(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return ""
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return ""
	}
	var found []string
	for _, s := range uc.Permissions.Sub.Allow {
		if s == "_INBOX.>" || s == ">" {
			return ""
		}
		if p, ok := strings.CutSuffix(s, ".>"); ok && strings.HasPrefix(p, "_INBOX") && !strings.ContainsAny(p, "*>.") {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return ""
	}
	return found[0]
}

// firstOf returns the first of its arguments that is not empty.
func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// redactURL hides a user and password or a token in a server URL.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if i := strings.Index(u, "://"); i >= 0 && i < at {
			return u[:i+3] + "[redacted]" + u[at:]
		}
		return "[redacted]" + u[at:]
	}
	return u
}

// explain adds what the server said outside the request to a request that
// got no reply: with a custom inbox prefix the creds may not subscribe
// to, the reply never comes and the only trace is that violation.
// request connects, makes one call with the client, and prints its reply:
// as JSON with --json, else with text.
func request[R any](ctx context.Context, f *connFlags, stdout io.Writer, call func(context.Context, *client.Client) (R, error), text func(io.Writer, R) error) error {
	c, err := f.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, done := c.watch(ctx)
	defer done()
	rep, err := call(ctx, c.client)
	if err != nil {
		// The client says of a request its context ended that the
		// service may still carry it out; not so of one the server would
		// not take from these creds (the only messages the CLI publishes
		// are its requests, under the prefix).
		if v := refused(ctx, api.Subject(f.prefix, "")); v != nil {
			return fmt.Errorf("the server refused the request, so nothing was done: %w", v)
		}
		return c.explain(ctx, err)
	}
	// The printers write many times and most ignore the errors: w keeps
	// the first one, so that a full disk or a closed pipe is not exit 0.
	w := &errWriter{w: stdout}
	if f.json {
		err = printJSON(w, rep)
	} else {
		err = text(w, rep)
	}
	if err == nil {
		err = w.err
	}
	if err != nil {
		return &outputError{rep: rep, err: err}
	}
	return nil
}

// change is request for a command that changes something: when its
// output cannot be written (a full disk, a closed pipe) after the service
// made the change, the error says what was done (done), so that the
// caller neither takes it for a failed change nor retries it blindly.
// SIGPIPE is notified meanwhile: a stdout pipe whose reader is gone
// killed the process at the write, saying nothing; the write fails with
// EPIPE instead (as for user create's creds).
func change[R any](ctx context.Context, what string, f *connFlags, stdout io.Writer, call func(context.Context, *client.Client) (R, error), text func(io.Writer, R) error, done func(R) string) error {
	stop := notifySIGPIPE()
	defer stop()
	err := request(ctx, f, stdout, call, text)
	var oe *outputError
	if errors.As(err, &oe) {
		return fmt.Errorf("%s: %s, but the output could not be written: %w", what, done(oe.rep.(R)), oe.err)
	}
	return err
}

// outputError is a reply that came but could not be printed.
type outputError struct {
	rep any
	err error
}

func (e *outputError) Error() string { return "the reply could not be written: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// errWriter writes to w until a write fails, and keeps that error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

// notifySIGPIPE has a write to a pipe whose reader is gone fail with
// EPIPE, rather than kill the process (what Go does for stdout and
// stderr), until the function it returns is called.
func notifySIGPIPE() func() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGPIPE)
	return func() { signal.Stop(c) }
}

// collect gathers every page of a list.
func collect[T any](pages iter.Seq2[T, error]) ([]T, error) {
	all := []T{}
	for v, err := range pages {
		if err != nil {
			return all, err
		}
		all = append(all, v)
	}
	return all, nil
}

// watch returns ctx, ended at a permissions violation the server sends
// while it is in use; done releases it.
func (c *conn) watch(ctx context.Context) (context.Context, func()) {
	ctx, stop := context.WithCancelCause(ctx)
	c.mu.Lock()
	c.stop = stop
	c.mu.Unlock()
	return ctx, func() { stop(nil) }
}

// refused returns the server's violation when ctx ended because the
// server would not take a message to subject ("Permissions Violation for
// Publish to" it; a subject ending in "." stands for every subject it
// starts), and nil otherwise. The server drops such a message
// before routing it, so the request never reached the service: nothing
// is in doubt. A violation on the inbox is not one of these: the request
// went out, and only its reply was lost.
func refused(ctx context.Context, subject string) error {
	cause := context.Cause(ctx)
	want := fmt.Sprintf("Publish to %q", subject)
	if strings.HasSuffix(subject, ".") {
		want = strings.TrimSuffix(want, `"`)
	}
	if cause != nil && errors.Is(cause, nats.ErrPermissionViolation) && strings.Contains(cause.Error(), want) {
		return cause
	}
	return nil
}

func (c *conn) explain(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, nats.ErrPermissionViolation) {
		return fmt.Errorf("%w; the server said: %v", err, cause)
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	c.nc.FlushTimeout(time.Second)
	c.mu.Lock()
	async := c.asyncErr
	c.mu.Unlock()
	if async != nil {
		return fmt.Errorf("%w; the server said: %v", err, async)
	}
	return err
}

// Close closes the connection.
func (c *conn) Close() { c.nc.Close() }

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

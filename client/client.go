// Package client is the Go client of the provisioning service: one typed,
// context-aware method per endpoint, with the wire types of package api,
// over a NATS connection the caller owns.
//
// A request the service refuses returns an *Error carrying the wire code,
// which matches one of the kinds (ErrNotFound, ErrConflict, ...) with
// errors.Is. A request nobody answers returns ErrNoService.
//
// CreateUser makes the user's key pair here, in the caller's process, and
// sends only the public key: the seed never crosses the wire. When no
// answer says whether that key was issued, its error (*UserInDoubtError)
// names it, so that it can be revoked.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/api"
)

// DefaultTimeout bounds a request whose context has no deadline. It is
// longer than the service's own default bound on a request (25s, four
// resolver timeouts and 5s), so that the client does not give up on a
// change the service is still completing.
const DefaultTimeout = 30 * time.Second

// Client sends provisioning requests. It is safe for concurrent use; it
// does not own the connection, so closing the connection is the caller's.
type Client struct {
	nc      *nats.Conn
	prefix  string
	timeout time.Duration
	// badPrefix is why WithPrefix's prefix is not one the service can
	// have; every call fails with it, sending nothing.
	badPrefix error
	// inboxOK is set once the connection is known to be allowed its
	// inbox (checkInbox). inboxSem (one slot) guards it: a channel, not
	// a mutex, so that a request waiting for another's check gives up at
	// its own context's end.
	inboxSem chan struct{}
	inboxOK  bool
}

// Option tunes a Client.
type Option func(*Client)

// WithPrefix sets the subject prefix of the service (its subject_prefix);
// default api.DefaultPrefix. An empty prefix keeps the default. A prefix
// the service refuses as its subject_prefix (a wildcard, a space, an empty
// token, a server subject) makes every call fail with ErrInvalid, sending
// nothing: such a request went to a wildcard or invalid subject, and the
// caller waited out its timeout or was told that no service runs.
func WithPrefix(prefix string) Option {
	return func(c *Client) {
		if prefix != "" {
			c.prefix = prefix
			c.badPrefix = api.CheckPrefix(prefix)
		}
	}
}

// WithTimeout bounds each request whose context has no deadline; default
// DefaultTimeout. A context's own deadline always wins.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// New returns a client that sends requests on nc.
func New(nc *nats.Conn, opts ...Option) *Client {
	c := &Client{nc: nc, prefix: api.DefaultPrefix, timeout: DefaultTimeout, inboxSem: make(chan struct{}, 1)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Prefix returns the subject prefix the client sends to.
func (c *Client) Prefix() string { return c.prefix }

// request sends req as JSON to the endpoint and decodes the reply into rep.
// It returns an *Error when the service answered with one, an error
// matching ErrNoService when nothing answers on the subject, and
// context.DeadlineExceeded or context.Canceled (wrapped) when no reply came
// in time; a request sent is not taken back, so the service may still
// carry it out. With a context that has already ended, nothing is sent,
// and the error says so.
func (c *Client) request(ctx context.Context, endpoint string, req, rep any) error {
	subject := api.Subject(c.prefix, endpoint)
	if c.badPrefix != nil {
		return fmt.Errorf("%w: the client's subject prefix %w; nothing was sent", ErrInvalid, c.badPrefix)
	}
	if !strings.HasPrefix(endpoint, "self.") {
		// A tenant's request reaches the service through an import, whose
		// reply subject the server replaces with one of its own: only a
		// connection in the service's account is checked.
		if reason := c.foreignInbox(); reason != "" {
			return fmt.Errorf("%w: %s %w: the connection's inbox prefix %q is %s, where the service sends no answer and carries out no request: connect with nats.CustomInboxPrefix set to another prefix (%q for the admin creds init writes)", ErrInvalid, subject, errNotSent, c.nc.Opts.InboxPrefix, reason, "_INBOX_admin")
		}
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("client: encode the %s request: %w", subject, err)
	}
	// The service refuses a seed in any field, but then it has crossed the
	// wire (and the servers): the same scan runs here first, of escaped
	// strings too (encoding/json writes "&" as \u0026, whose 6 hid a seed
	// right after it from a scan of the raw bytes).
	if api.BodyHoldsSeed(data) {
		return fmt.Errorf("%w: a field of the %s request holds a seed; nothing was sent", ErrInvalid, subject)
	}
	// A context that has already ended sends nothing (nats.go checks it
	// before it publishes): the caller must not be told that the service
	// may carry the request out, and read back or revoke for nothing.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("client: %s %w, its context had already ended%s: %w", subject, errNotSent, cause(ctx), err)
	}
	// A closed connection sends nothing either (nats.go refuses to
	// publish), but its error is the one of a connection lost while the
	// request waited, which leaves the request in doubt: told apart here.
	if c.nc.IsClosed() {
		return fmt.Errorf("client: %s %w, the connection is closed: %w", subject, errNotSent, nats.ErrConnectionClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	if err := c.checkInbox(ctx); err != nil {
		return fmt.Errorf("client: %s %w: %w", subject, errNotSent, err)
	}
	if err := ctx.Err(); err != nil {
		// It ended while the inbox was checked.
		return fmt.Errorf("client: %s %w, its context ended%s: %w", subject, errNotSent, cause(ctx), err)
	}
	start := time.Now()
	msg, err := c.send(ctx, subject, data, strings.HasPrefix(endpoint, "self."))
	switch {
	case errors.Is(err, nats.ErrNoResponders) && strings.HasPrefix(endpoint, "self."):
		// A tenant reaches the service through the import the service
		// adds to an account with self_service only: without it, the
		// subject has no responder in the tenant's account even while
		// the service runs.
		return fmt.Errorf("%w on %s (does the caller's account have self_service? Only such an account imports the self-service subjects; else, is the service running, with subject prefix %q?): %w", ErrNoService, subject, c.prefix, err)
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w on %s (is the service running, with subject prefix %q?): %w", ErrNoService, subject, c.prefix, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("client: no reply on %s within %s%s (the service may still carry the request out): %w", subject, time.Since(start).Round(time.Millisecond), cause(ctx), err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("client: %s canceled before its reply%s (the service may still carry the request out): %w", subject, cause(ctx), err)
	case err != nil:
		return fmt.Errorf("client: request %s: %w", subject, err)
	}
	if err := replyError(msg); err != nil {
		return err
	}
	// Unknown fields are accepted: a newer service may add some.
	if err := json.Unmarshal(msg.Data, rep); err != nil {
		return fmt.Errorf("client: the reply on %s is not what the client expects: %w: %w", subject, errUnreadable, err)
	}
	return nil
}

// foreignInbox says why the connection's reply subjects are ones the
// service's responder drops a request for unanswered, without carrying it
// out ("" when they are not): a server subject, one of the service's
// subjects (README). Sent, such a request was waited for until the
// timeout and reported as one the service "may still carry out",
// CreateUser naming a key to revoke, though nothing was done. The
// service's own inbox prefix is its config's, unknown here; the creds
// init gives it (_INBOX_provisioner) may not send requests anyway, which
// the server's publish violation says.
func (c *Client) foreignInbox() string {
	ib := strings.TrimSuffix(c.nc.Opts.InboxPrefix, ".") + "."
	switch {
	case ib == ".":
		return "" // nats.go's default, _INBOX
	case strings.HasPrefix(ib, "$"):
		return "a server subject"
	case strings.HasPrefix(ib, c.prefix+"."):
		return "under the service's subject prefix"
	}
	return ""
}

// checkInbox makes sure, once per client, that the connection may
// subscribe to its own inbox, where every reply comes. Creds that may read
// replies only under their own prefix (init's admin creds: _INBOX_admin)
// on a connection without nats.CustomInboxPrefix had their inbox refused
// by the server, which said so only to the async error handler: each
// request was sent and carried out, and its caller waited out its timeout
// to hear that the service "may still carry the request out" (a user
// created, its seed gone). When the check cannot be made (the connection
// is reconnecting, the context ends), the request goes as before.
func (c *Client) checkInbox(ctx context.Context) error {
	// Another request's check, on a stalled server, lasts until that
	// request's context ends: waited for with a mutex, a request with a
	// shorter deadline returned only then. Given up here, the caller
	// finds its context ended and says that nothing was sent.
	select {
	case c.inboxSem <- struct{}{}:
	case <-ctx.Done():
		return nil
	}
	defer func() { <-c.inboxSem }()
	if c.inboxOK || !c.nc.IsConnected() {
		// While reconnecting, the request goes to nats.go's buffer as
		// before: a flush would hold it until the context ends.
		return nil
	}
	// The shape of nats.go's own reply subscription (prefix.<id>.*), so
	// that creds allowed that much and no more pass.
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	// The server answers a refused subscription with an -ERR before the
	// flush's PONG, which nats.go keeps as the connection's last error.
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return nil
	}
	if err := c.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), strconv.Quote(inbox+".*")) {
		return fmt.Errorf("the connection may not subscribe to its inbox (prefix %q), so no reply could reach it: connect with nats.CustomInboxPrefix set to the prefix its creds may read (%q for the admin creds init writes): %w", inbox[:strings.LastIndexByte(inbox, '.')], "_INBOX_admin", err)
	}
	c.inboxOK = true
	return nil
}

// send sends a request with the context's deadline (api.DeadlineHeader),
// so that a service reaching it only after the client gave up does not
// carry it out, and returns the reply.
func (c *Client) send(ctx context.Context, subject string, data []byte, self bool) (*nats.Msg, error) {
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	// A deadline past the year 9999 (a caller's "never") has no RFC 3339
	// form (Format writes five digits, which the service refuses, 400),
	// and fences nothing: it is not sent.
	if d, ok := ctx.Deadline(); ok && d.UTC().Year() <= 9999 {
		m.Header.Set(api.DeadlineHeader, d.UTC().Format(time.RFC3339Nano))
	}
	msg, err := c.nc.RequestMsgWithContext(ctx, m)
	if self && err == nil && len(m.Header) > 0 && oldSelfRefusal(msg) {
		// A service older than the header refuses every header on a
		// self-service request before doing anything: sent again
		// without it, as such a service expects.
		m.Header = nil
		msg, err = c.nc.RequestMsgWithContext(ctx, m)
	}
	return msg, err
}

// oldSelfRefusal reports whether msg is the 403 with which a service older
// than api.DeadlineHeader refuses a self-service request with headers.
func oldSelfRefusal(msg *nats.Msg) bool {
	var e *Error
	return errors.As(replyError(msg), &e) && e.Code == 403 && strings.Contains(e.Description, "carries no headers of its own (the server adds")
}

// errNotSent marks the error of a request that was never sent.
var errNotSent = errors.New("not sent")

// errUnreadable marks a success reply the client could not decode: the
// service carried the request out, but what it did is unknown here.
var errUnreadable = errors.New("unreadable reply")

// inDoubt reports whether err leaves it unknown whether the service
// carried the request out: it was sent and no answer came (the context
// ended, the connection went away), or the service answered 504, or
// with a success the client cannot read.
func inDoubt(err error) bool {
	if errors.Is(err, errNotSent) {
		return false
	}
	return errors.Is(err, errUnreadable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, ErrTimeout)
}

// cause names why ctx ended when the caller gave a cause of its own
// (context.WithCancelCause, WithTimeoutCause), "" otherwise.
func cause(ctx context.Context) string {
	if c := context.Cause(ctx); c != nil && c != ctx.Err() {
		return " (" + c.Error() + ")"
	}
	return ""
}

// replyError returns the *Error of a failed reply, or nil. The code comes
// from the Nats-Service-Error-Code header, the description from
// Nats-Service-Error or else from the api.ErrorReply body; a body with an
// error and no headers counts too.
func replyError(msg *nats.Msg) error {
	var body api.ErrorReply
	bodyErr := bytes.Contains(msg.Data, []byte(`"error"`)) && json.Unmarshal(msg.Data, &body) == nil && body.Error.Code != 0
	if h := msg.Header.Get(micro.ErrorCodeHeader); h != "" {
		code, err := strconv.Atoi(h)
		if err != nil {
			return &Error{Code: 500, Description: fmt.Sprintf("the service replied with an unreadable error code %q: %s", h, msg.Header.Get(micro.ErrorHeader))}
		}
		desc := msg.Header.Get(micro.ErrorHeader)
		if desc == "" && bodyErr {
			desc = body.Error.Description
		}
		return &Error{Code: code, Description: desc}
	}
	if bodyErr {
		return &Error{Code: body.Error.Code, Description: body.Error.Description}
	}
	return nil
}

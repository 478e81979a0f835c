// Package resolver is the client of nats-server's account resolver API: it
// pushes account JWTs and deletions on $SYS.REQ.CLAIMS.*, looks accounts
// up, lists what each server holds, and collects the answer of every server,
// not just the first. It implements provision.Resolver and translates the
// servers' answers into the domain's PushResult and error kinds.
//
// Each server with a full resolver answers claims requests itself, so in a
// cluster one request gets one reply per server. The client knows the
// servers by name (a restarted server keeps its name and gets a new ID): it
// learns them from $SYS.REQ.SERVER.PING.IDZ, refreshed in the background,
// and from the servers' own STATSZ and SHUTDOWN events. A request waits
// until every server that is up has answered or the timeout has passed: a
// push costs one round trip to the slowest live server, not a fixed wait,
// and never waits for a server known to be down.
package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/provision"
)

// Subjects of the server's system API used by the client.
const (
	SubjectClaimsUpdate   = "$SYS.REQ.CLAIMS.UPDATE"
	SubjectClaimsDelete   = "$SYS.REQ.CLAIMS.DELETE"
	SubjectClaimsList     = "$SYS.REQ.CLAIMS.LIST"
	SubjectServerPing     = "$SYS.REQ.SERVER.PING.IDZ"
	SubjectServerVarz     = "$SYS.REQ.SERVER.PING.VARZ"
	SubjectServerStatsz   = "$SYS.SERVER.*.STATSZ"
	SubjectServerShutdown = "$SYS.SERVER.*.SHUTDOWN"
	subjectLookupFormat   = "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP"
)

// Defaults of Options.
const (
	DefaultTimeout         = 5 * time.Second
	DefaultRefreshInterval = 30 * time.Second
	DefaultForgetAfter     = 24 * time.Hour
)

// pingOverdue is how long a request waits for the servers' answers
// before it asks for a ping, while it goes on waiting: a server answers a
// claims request within milliseconds unless it is busy or gone.
const pingOverdue = 500 * time.Millisecond

// joinedBuffer is how many Joined events wait for a reader before the
// oldest is dropped.
const joinedBuffer = 64

// Options tune a Client. Zero values take the defaults.
type Options struct {
	// Timeout bounds how long a request waits for the servers, and how
	// long a refresh waits for a server to answer its ping. Default 5s.
	Timeout time.Duration
	// RefreshInterval is how often the client pings the servers. A server
	// that misses a ping is marked down. Default 30s.
	RefreshInterval time.Duration
	// ForgetAfter is how long a server that is down stays known (listed by
	// Servers and in push results) before the client forgets it. Default
	// 24h.
	ForgetAfter time.Duration
	// Logger receives refresh failures and server comings and goings.
	// Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.ForgetAfter <= 0 {
		o.ForgetAfter = DefaultForgetAfter
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// serverInfo mirrors the server's ServerInfo: the reply to PING.IDZ, and
// the "server" field of every system API reply and event.
type serverInfo struct {
	Name string `json:"name"`
	Host string `json:"host"`
	ID   string `json:"id"`
}

// apiError mirrors the server's ApiError.
type apiError struct {
	Account     string `json:"account"`
	Code        int    `json:"code"`
	Description string `json:"description"`
}

var _ provision.Resolver = (*Client)(nil)

// Client sends requests to the servers' resolvers and gathers every
// server's reply. It is safe for concurrent use. Create it with New and stop
// it with Close.
type Client struct {
	nc   *nats.Conn
	opts Options
	log  *slog.Logger

	// One wildcard subscription carries the replies of every request; the
	// last token of the reply subject picks the waiting request. The inbox
	// comes from nc.NewInbox, so it honours a custom inbox prefix.
	inbox  string
	sub    *nats.Subscription
	seq    atomic.Uint64
	waitMu sync.Mutex
	wait   map[string]chan *nats.Msg

	// events are the STATSZ and SHUTDOWN subscriptions; nil when the
	// user may not subscribe to them.
	events []*nats.Subscription

	// mu guards the server table, the Joined channel and closed.
	mu      sync.Mutex
	servers map[string]*provision.Server // by name
	ids     map[string]string            // current server ID -> name
	retired map[string]time.Time         // IDs of instances that shut down or were replaced -> when
	joined  chan provision.Server
	// downCh is closed, and replaced, when a server goes down, so that
	// requests in flight stop waiting for it.
	downCh chan struct{}
	ready  bool // set once New's first refresh is done; Joined fires after
	closed bool
	// A server's resolver may be of a type that answers no claims request
	// (MEMORY, URL): it answers the server ping, so it is known, but no
	// push, DELETE, LIST or LOOKUP. claimsAnswered holds, by name, the ID
	// of each instance that has answered one; suspects those that missed
	// one without ever answering one; noResolver those of the suspects
	// that then answered a ping: up, but without a resolver to wait for;
	// noResolverAt when each of those was found.
	claimsAnswered map[string]string
	suspects       map[string]string
	noResolver     map[string]string
	noResolverAt   map[string]time.Time
	// shared holds the names that two instances answered one ping as
	// (two servers given one server_name, which nats-server refuses on
	// routes and gateways but not on leaf connections), and when that was
	// last seen: their LISTs cannot be told apart by name.
	shared map[string]time.Time

	// refreshing holds one token while a refresh runs: one refresh at a
	// time. A channel, not a mutex, so that a request waiting for the
	// refresh under way stops at its deadline or at Close.
	refreshing chan struct{}
	kick       chan struct{}
	stop       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// New subscribes the client's reply inbox and the server events on nc,
// pings the servers once, and starts the background refresh. The client
// uses nc as it is given and never closes it. New fails when the reply inbox
// cannot be subscribed (the user's permissions must allow the connection's
// inbox prefix); when the server events are not allowed it logs a warning
// and learns of restarts at the next refresh instead.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Client, error) {
	opts.setDefaults()
	c := &Client{
		nc:      nc,
		opts:    opts,
		log:     opts.Logger,
		inbox:   nc.NewInbox() + ".",
		wait:    map[string]chan *nats.Msg{},
		servers: map[string]*provision.Server{},
		ids:     map[string]string{},
		retired: map[string]time.Time{},
		joined:  make(chan provision.Server, joinedBuffer),

		claimsAnswered: map[string]string{},
		suspects:       map[string]string{},
		noResolver:     map[string]string{},
		noResolverAt:   map[string]time.Time{},
		shared:         map[string]time.Time{},
		downCh:         make(chan struct{}),
		refreshing:     make(chan struct{}, 1),
		kick:           make(chan struct{}, 1),
		stop:           make(chan struct{}),
		done:           make(chan struct{}),
	}
	sub, err := c.subscribe(ctx, c.inbox+"*", c.dispatch)
	if err != nil {
		return nil, fmt.Errorf("resolver: reply inbox: %w", err)
	}
	c.sub = sub
	for _, ev := range []struct {
		subject string
		cb      nats.MsgHandler
	}{{SubjectServerStatsz, c.onStatsz}, {SubjectServerShutdown, c.onShutdown}} {
		s, err := c.subscribe(ctx, ev.subject, ev.cb)
		if err != nil {
			c.log.Warn("resolver cannot follow server events; restarts are noticed at the next refresh instead", "subject", ev.subject, "error", err)
			continue
		}
		c.events = append(c.events, s)
	}
	if err := c.refresh(ctx); err != nil {
		c.log.Warn("resolver could not list the servers; will retry", "error", err)
		if errors.Is(err, errLostPing) {
			// The answers still on the way were lost with the
			// connection: asked again as soon as the loop starts (once
			// the connection is back), as the loop does for its own.
			// Left to the next refresh, a server whose answer was lost
			// stayed unknown that long, and every push meanwhile was
			// answered as heard from every server without it.
			c.triggerRefresh()
		}
	}
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	go c.refreshLoop()
	return c, nil
}

// subscribe subscribes and makes sure the server took the subscription: a
// refused subscription only shows as an asynchronous permissions error,
// which arrives before the flush's PONG.
func (c *Client) subscribe(ctx context.Context, subject string, cb nats.MsgHandler) (*nats.Subscription, error) {
	sub, err := c.nc.Subscribe(subject, cb)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	fctx, cancel := context.WithTimeout(ctx, c.opts.Timeout) // Flush needs a deadline
	defer cancel()
	if err := c.nc.FlushWithContext(fctx); err != nil {
		// Not connected now: the subscription is sent on reconnect, and
		// whether it is allowed cannot be told yet.
		c.log.Debug("resolver could not confirm a subscription", "subject", subject, "error", err)
		return sub, nil
	}
	if err := c.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return sub, nil
}

// Close stops the background refresh and the client's subscriptions, and
// closes the Joined channel. Requests still waiting end with what they have.
// It does not close the connection.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.stop)
		<-c.done
		var errs []error
		for _, s := range append([]*nats.Subscription{c.sub}, c.events...) {
			if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, err)
			}
		}
		c.mu.Lock()
		c.closed = true
		close(c.joined)
		c.mu.Unlock()
		if err := errors.Join(errs...); err != nil {
			c.closeErr = fmt.Errorf("resolver: close: %w", err)
		}
	})
	return c.closeErr
}

func (c *Client) dispatch(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.waitMu.Lock()
	ch := c.wait[token]
	c.waitMu.Unlock()
	if ch == nil {
		// A late reply to a request that is done. Its server may be one
		// that answers after the others (busy, across a gateway, on a
		// slow route), which a refresh, waiting only quietGap after the
		// servers known, never learns of: without the server events it
		// stayed unknown for good, and no push or delete waited for it.
		c.sighted(lateIdentity(m.Data))
		if name, id := claimsIdentity(m.Data); id != "" {
			// A resolver's late answer: a server suspected of having
			// none (new, and slow to answer its first) has one.
			c.answeredClaims(name, id)
		}
		return
	}
	select {
	case ch <- m:
	default:
		// More replies than a request can hold: more servers answered than
		// were known. They are not needed; learn the new servers.
		c.triggerRefresh()
	}
}

// open registers a reply channel and returns the reply subject, the channel
// and the function that unregisters it.
func (c *Client) open(capacity int) (string, chan *nats.Msg, func()) {
	token := strconv.FormatUint(c.seq.Add(1), 36)
	ch := make(chan *nats.Msg, capacity)
	c.waitMu.Lock()
	c.wait[token] = ch
	c.waitMu.Unlock()
	return c.inbox + token, ch, func() {
		c.waitMu.Lock()
		delete(c.wait, token)
		c.waitMu.Unlock()
	}
}

// until says when a request has had enough replies.
type until int

const (
	// untilAllUp waits for a reply from every server that is up (or, when
	// none is known, for the first reply).
	untilAllUp until = iota
	// untilFirst waits for the first reply.
	untilFirst
	// untilAllFullUp is untilAllUp without the servers known to run a
	// cache resolver, which do not answer a LOOKUP.
	untilAllFullUp
)

// reply is one reply to a request, with the server that sent it when the
// reply says ("" for a LOOKUP's bare JWT).
type reply struct {
	server, id string
	msg        *nats.Msg
}

// gathered is what a request brought back.
type gathered struct {
	// known are the servers known when the request was sent, sorted by
	// name, those that are down among them.
	known   []provision.Server
	replies []reply
	// cutAfter is how long the request waited when its wait was cut
	// before its timeout (the caller's deadline or stop, Close, the
	// connection closed); zero when it was not.
	cutAfter time.Duration
}

// gather sends one request and collects the replies until the wait rule is
// met, the timeout passes or ctx ends. The error is ErrNotSent (closed, not
// connected, ctx done before sending, or nobody listens on subject) or
// ErrTimeout (no reply at all), wrapped with what and why; with at least
// one reply it is nil. The known servers are returned in every case but
// closed.
func (c *Client) gather(ctx context.Context, subject string, data []byte, rule until, identify bool) (gathered, error) {
	var g gathered
	if c.isClosed() {
		return g, fmt.Errorf("%w: client closed", provision.ErrNotSent)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if !c.awaitConnected(wctx) {
		// Ended by the caller (a stop) before the timeout: say so, so
		// that service.Run takes a stop during the start for a clean one.
		if err := ctx.Err(); err != nil {
			return c.withKnown(g), fmt.Errorf("%w: not connected to NATS: %w", provision.ErrNotSent, err)
		}
		if c.isClosed() {
			return g, fmt.Errorf("%w: client closed while waiting for the connection to NATS", provision.ErrNotSent)
		}
		return c.withKnown(g), fmt.Errorf("%w: not connected to NATS within %s", provision.ErrNotSent, c.opts.Timeout)
	}
	if rule != untilFirst && c.upCount() == 0 {
		// Nothing is known to wait for: ask before sending, or the
		// request would end at the first reply.
		if err := c.refreshIfNoneUp(wctx); err != nil {
			c.log.Warn("resolver could not list the servers", "error", err)
		}
	}
	// Taken before the servers are listed, so that one going down in
	// between is noticed.
	down := c.downSignal()
	g = c.withKnown(g)
	claims := isClaimsSubject(subject)
	want := map[string]string{} // name -> the ID of the instance waited for
	for _, s := range g.known {
		if s.Up && !(rule == untilAllFullUp && s.Cache) && !(claims && c.hasNoResolver(s.Name, s.ID)) {
			want[s.Name] = s.ID
		}
	}
	subj, ch, done := c.open(2*len(g.known) + 8)
	defer func() { done() }() // the reply subject of a request sent again may replace it
	if err := ctx.Err(); err != nil {
		return g, fmt.Errorf("%w: %w", provision.ErrNotSent, err)
	}
	// The replies of a request sent before the connection dropped are
	// lost with it (the inbox is subscribed again on the reconnect), and
	// the request itself may be: the servers' silence is then the
	// client's own. A request whose replies say who sent them is sent
	// again once the connection is back, the replies of a server that
	// had answered it counted once: a push of one JWT or one deletion
	// lands the same twice, and a LIST or VARZ changes nothing. Left
	// lost, a push across the client's own reconnect waited the whole
	// timeout and failed as unanswered. A request whose replies do not
	// say who sent them (a LOOKUP's bare JWT) is sent again too, on a
	// reply subject of its own, and starts over: its replies to the
	// first could not be told from those to the second. Not sent again,
	// a LOOKUP across the client's own reconnect waited the whole
	// timeout as well. A connection closed for good (by nats.go: its
	// creds refused, its reconnects used up; or by its owner) brings no
	// answer any more: the wait ends with it, not at the timeout.
	reconnected := c.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer c.nc.RemoveStatusListener(reconnected)
	reconnects := c.nc.Stats().Reconnects
	// As first sent: a request sent again after a reconnect (below) still
	// crossed one, which the end's checks must know.
	sentAt := reconnects
	if err := c.nc.PublishRequest(subject, subj, data); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			// An account JWT signed while max_payload was larger: no
			// retry delivers it, and "maximum payload exceeded" alone
			// reads like a delivery failure that passes.
			return g, fmt.Errorf("%w: publish %s: the JWT is %d bytes, %w of %d bytes; raise max_payload on every server, or make the account's JWT smaller (remove revocations, tags or permissions): %w", provision.ErrNotSent, subject, len(data), provision.ErrOverMaxPayload, c.nc.MaxPayload(), err)
		}
		return g, fmt.Errorf("%w: publish %s: %w", provision.ErrNotSent, subject, err)
	}

	got := map[string]bool{}
	anonymous := 0
	resent := false
	answered := map[string]bool{} // IDs that replied, once resent
	enough := func() bool {
		if rule == untilFirst || len(want) == 0 {
			return len(g.replies) > 0
		}
		return len(want)-len(got) <= anonymous
	}
	noResponders := false
	// A server that went away without a word (kill -9, a machine lost)
	// answers no ping either, but only a ping marks it down: asked for
	// after the whole timeout, every request until then waited all of it
	// for that server. Asked for once a live server's answer is overdue,
	// the wait for a dead one is about the ping's; a slow server answers
	// the ping, stays up and is still waited for.
	var overdue <-chan time.Time
	if rule != untilFirst {
		t := time.NewTimer(pingOverdue)
		defer t.Stop()
		overdue = t.C
	}
	for !enough() {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-overdue:
			overdue = nil
			c.triggerRefresh()
			continue
		case st := <-reconnected:
			if st == nats.CLOSED || c.nc.IsClosed() {
				break // the wait ends with what it has
			}
			if n := c.nc.Stats().Reconnects; n != reconnects {
				reconnects = n
				to, tch, tdone := subj, ch, func() {}
				if !identify {
					to, tch, tdone = c.open(cap(ch))
				}
				if err := c.nc.PublishRequest(subject, to, data); err != nil {
					tdone()
					c.log.Debug("resolver could not send a request again after a reconnect", "subject", subject, "error", err)
					continue
				}
				if !identify {
					// Late replies to the first request now go
					// unread, as any request's that is done.
					done()
					subj, ch, done = to, tch, tdone
					g.replies, anonymous = nil, 0
				}
				resent = true
				c.log.Debug("resolver sent a request again after a reconnect", "subject", subject)
			}
			continue
		case <-down:
			// A server went down, or was replaced by a restart, while
			// the request waits for it.
			down = c.downSignal()
			for name, id := range want {
				if !c.isUpAs(name, id) {
					delete(want, name)
					delete(got, name)
				}
			}
			continue
		case <-wctx.Done():
		case <-c.stop:
		}
		if m == nil {
			break
		}
		if isNoResponders(m) {
			// Nobody subscribes to subject: no resolver anywhere.
			noResponders = true
			break
		}
		r := reply{msg: m}
		if identify {
			r.server, r.id = identity(m.Data)
		}
		if r.id != "" && resent && answered[r.id] {
			continue // its answer to the request sent again
		}
		switch {
		case r.id != "":
			answered[r.id] = true
			c.sighted(r.server, r.id)
			if claims {
				c.answeredClaims(r.server, r.id)
			}
			// Only the answer of the instance waited for: another
			// instance under the name (a restarted server's old one,
			// not yet gone) has not answered for it. Counted, the
			// request stopped waiting for the instance that holds what
			// the server holds now, and reported it as silent.
			if id, ok := want[r.server]; ok && id == r.id {
				got[r.server] = true
			}
		case identify:
			// An answer that names no server (a foreign responder in
			// the system account: nats-server names itself in every
			// claims, LIST and VARZ reply) is no server's. Counted as
			// one waited for, the push stopped at it, and a server up
			// and answering a moment later was reported silent, its
			// answer dropped. It stays in the replies.
			c.log.Debug("resolver got an answer that names no server", "subject", subject)
		default:
			anonymous++ // a LOOKUP's bare JWT: the replies name no server
		}
		g.replies = append(g.replies, r)
	}
	if rule != untilFirst && !enough() && !noResponders {
		if claims && identify && c.nc.IsConnected() && c.nc.Stats().Reconnects == sentAt && ctx.Err() == nil && !c.isClosed() {
			// Not when the connection dropped meanwhile (sent again
			// after it or not: the resent request's answer may still
			// be on the way): a server
			// that never heard the request, or whose answer was lost,
			// is no server without a resolver, and the ping after the
			// reconnect, which it answers, took it for one. Nor when
			// the wait was cut (the caller's deadline or stop, Close)
			// before its own timeout: a server given that little
			// time, new and slow to answer its first claims request,
			// was taken for one without a resolver until its late
			// answer came in, and nothing waited for it meanwhile.
			c.suspectSilent(want, got)
		}
		// A server that went away without a word would keep every later
		// request waiting for it: a ping tells whether it is down (or,
		// for a suspect, up without a resolver).
		c.triggerRefresh()
	}
	if !enough() && (ctx.Err() != nil || c.isClosed() || c.nc.IsClosed()) {
		g.cutAfter = max(time.Since(start), time.Millisecond)
	}
	g.known = c.updateUp(g.known)
	switch {
	case len(g.replies) > 0:
		return g, nil
	case noResponders:
		return g, fmt.Errorf("%w: nothing listens on %s (is the server in operator mode with a full resolver?)", provision.ErrNotSent, subject)
	case ctx.Err() != nil:
		return g, fmt.Errorf("%w: %w", provision.ErrTimeout, ctx.Err())
	case c.isClosed():
		return g, fmt.Errorf("%w: client closed", provision.ErrTimeout)
	case c.nc.IsClosed():
		return g, fmt.Errorf("%w: the connection to NATS was closed while waiting, and the request may or may not have reached the servers", provision.ErrTimeout)
	case !c.nc.IsConnected() || c.nc.Stats().Reconnects != sentAt:
		return g, fmt.Errorf("%w within %s: the connection to NATS dropped while waiting, and the request may or may not have reached the servers", provision.ErrTimeout, c.opts.Timeout)
	}
	return g, fmt.Errorf("%w within %s", provision.ErrTimeout, c.opts.Timeout)
}

// isClaimsSubject tells a request that only a server's resolver answers (a
// full or cache one): a push, DELETE, LIST or LOOKUP, not a server ping.
func isClaimsSubject(subject string) bool {
	return strings.HasPrefix(subject, "$SYS.REQ.CLAIMS.") || strings.HasPrefix(subject, "$SYS.REQ.ACCOUNT.") && strings.HasSuffix(subject, ".CLAIMS.LOOKUP")
}

func (c *Client) withKnown(g gathered) gathered {
	g.known = c.Servers()
	return g
}

// identity reads the server's name and ID from a system API reply. A
// server without a name is known by its ID, as nats-server itself names it.
func identity(data []byte) (name, id string) {
	var r struct {
		Server *serverInfo `json:"server"`
	}
	if json.Unmarshal(data, &r) != nil || r.Server == nil {
		return "", ""
	}
	return serverName(r.Server), r.Server.ID
}

// claimsIdentity reads the server's name and ID from a resolver's answer
// to a push, DELETE or LIST (its data a message, or a list of accounts, or
// a refusal), not from another system API reply.
func claimsIdentity(data []byte) (name, id string) {
	var r struct {
		Server *serverInfo      `json:"server"`
		Data   *json.RawMessage `json:"data"`
		Error  *apiError        `json:"error"`
	}
	if json.Unmarshal(data, &r) != nil || r.Server == nil {
		return "", ""
	}
	if r.Data == nil && r.Error != nil && r.Error.Description != "" {
		// A refusal (a stalled disk back with an error) is a
		// resolver's answer too: only a resolver refuses a claims
		// request, and the client's server pings (IDZ, VARZ, sent
		// with no options) are answered with no error. Not taken for
		// one, a full resolver taken for one without a resolver while
		// its disk stalled stayed so after its late refusal.
		return serverName(r.Server), r.Server.ID
	}
	if r.Data == nil {
		return "", ""
	}
	var update struct {
		Message *string `json:"message"`
	}
	var list []string
	if json.Unmarshal(*r.Data, &list) != nil && (json.Unmarshal(*r.Data, &update) != nil || update.Message == nil) {
		return "", ""
	}
	return serverName(r.Server), r.Server.ID
}

// lateIdentity reads the server's name and ID from a reply of any kind: a
// system API reply, or a reply to PING.IDZ (the server's identity itself).
// A LOOKUP's bare JWT has neither.
func lateIdentity(data []byte) (name, id string) {
	if name, id = identity(data); id != "" {
		return name, id
	}
	var s serverInfo
	if json.Unmarshal(data, &s) != nil {
		return "", ""
	}
	return serverName(&s), s.ID
}

// awaitConnected waits, while the connection is reconnecting, until it is
// back or ctx ends. A push connection keeps no reconnect buffer (a push must
// not land after its request was answered), so a push sent in the first
// moments after a server restart would otherwise fail. It reports false
// when it gave up: ctx ended, or the client closed (requests still waiting
// end at Close; waiting here, a push went on waiting its whole timeout
// after it).
func (c *Client) awaitConnected(ctx context.Context) bool {
	if !c.nc.IsReconnecting() {
		return true
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.nc.IsReconnecting() {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		case <-c.stop:
			return false
		}
	}
	return true
}

// isNoResponders tells the server's "503 no responders" status message,
// sent when nobody subscribes to a request's subject, from a reply.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

func (c *Client) isClosed() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

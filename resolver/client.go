// Package resolver is the client of nats-server's account resolver API: it
// pushes account JWTs and deletions on $SYS.REQ.CLAIMS.* and collects the
// answer of every server, not just the first.
//
// Each server with a full resolver answers claims requests itself, so in a
// cluster one request gets one reply per server. The client learns which
// servers to expect from $SYS.REQ.SERVER.PING.IDZ, refreshed in the
// background, and waits until all of them have answered or the timeout has
// passed: a push costs one round trip to the slowest server, not a fixed wait.
package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Subjects of the server's system API used by the client.
const (
	SubjectClaimsUpdate = "$SYS.REQ.CLAIMS.UPDATE"
	SubjectClaimsDelete = "$SYS.REQ.CLAIMS.DELETE"
	SubjectClaimsList   = "$SYS.REQ.CLAIMS.LIST"
	SubjectServerPing   = "$SYS.REQ.SERVER.PING.IDZ"
	subjectLookupFormat = "$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP"
)

// Messages a server sends in the data of a successful claims reply. Only
// "jwt updated" means a full resolver stored the JWT; a cache resolver
// answers 200 as well, without storing anything.
const (
	msgStored       = "jwt updated"
	msgCacheSkipped = "jwt update cache skipped"
	msgCacheUpdated = "jwt updated cache"
)

// Errors returned by the client. A refusal comes as a *RefusedError, which
// matches ErrRefused.
var (
	ErrRefused = errors.New("resolver refused")
	ErrTimeout = errors.New("no resolver answered")
	// ErrNotSent: the request reached no server (not connected, or nothing
	// listens on the claims API), so nothing can have changed.
	ErrNotSent = errors.New("resolver request not delivered")
)

// Options tune a Client.
type Options struct {
	// Timeout bounds how long a request waits for the servers. Default 5s.
	Timeout time.Duration
	// RefreshInterval is how often the client asks which servers there are.
	// Default 30s.
	RefreshInterval time.Duration
	// Logger receives refresh failures. Default: discard.
	Logger *slog.Logger
}

// Reply is what one server answered, or that it did not answer in time.
type Reply struct {
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	Code     int    `json:"code"`
	Message  string `json:"message"`
	// Stored is true when the server's full resolver stored the JWT or
	// carried out the deletion.
	Stored bool `json:"-"`
	// Answered is false for a server that was expected but did not answer.
	Answered bool `json:"-"`
}

// Result is the outcome of one request: a reply per server, sorted by
// server name.
type Result []Reply

// Stored counts the servers that stored the change.
func (r Result) Stored() int {
	n := 0
	for _, rep := range r {
		if rep.Stored {
			n++
		}
	}
	return n
}

// RefusedError is returned when a server refused a request, or when every
// answer came from a cache resolver that stored nothing.
type RefusedError struct {
	Result Result
	Reason string
}

func (e *RefusedError) Error() string { return "resolver refused: " + e.Reason }

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// serverID mirrors the server's ServerID, the reply to PING.IDZ.
type serverID struct {
	Name string `json:"name"`
	Host string `json:"host"`
	ID   string `json:"id"`
}

// claimsReply mirrors the server's ServerAPIClaimUpdateResponse.
type claimsReply struct {
	Server *serverID `json:"server"`
	Data   *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// Client sends claims requests and gathers every server's reply. It is safe
// for concurrent use. Create it with New and stop it with Close.
type Client struct {
	nc   *nats.Conn
	opts Options
	log  *slog.Logger

	// One wildcard subscription carries the replies of every request; the
	// last token of the reply subject picks the waiting request.
	inbox string
	sub   *nats.Subscription
	seq   atomic.Uint64
	mu    sync.Mutex
	wait  map[string]chan *nats.Msg

	servers    atomic.Pointer[[]serverID]
	refreshing atomic.Bool
	kick       chan struct{}
	stop       chan struct{}
	done       chan struct{}
}

// New subscribes the client's reply inbox on nc, asks once which servers
// there are, and starts the background refresh.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		nc:    nc,
		opts:  opts,
		log:   opts.Logger,
		inbox: nc.NewInbox() + ".",
		wait:  map[string]chan *nats.Msg{},
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	sub, err := nc.Subscribe(c.inbox+"*", c.dispatch)
	if err != nil {
		return nil, fmt.Errorf("resolver: subscribe reply inbox: %w", err)
	}
	c.sub = sub
	if err := c.refresh(ctx); err != nil {
		c.log.Warn("resolver could not list the servers; will retry", "error", err)
	}
	go c.refreshLoop()
	return c, nil
}

// Close stops the background refresh and the reply subscription.
func (c *Client) Close() error {
	close(c.stop)
	<-c.done
	return c.sub.Unsubscribe()
}

// Servers returns the number of servers the client currently expects to
// answer.
func (c *Client) Servers() int {
	if s := c.servers.Load(); s != nil {
		return len(*s)
	}
	return 0
}

func (c *Client) dispatch(m *nats.Msg) {
	token := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	ch := c.wait[token]
	c.mu.Unlock()
	if ch == nil {
		return // a late reply to a request that is done
	}
	select {
	case ch <- m:
	default:
		// More replies than a request can hold: more servers answered than
		// were known. They are not needed; learn the new servers.
		c.triggerRefresh()
	}
}

// open registers a reply channel and returns the reply subject.
func (c *Client) open(capacity int) (string, chan *nats.Msg, func()) {
	token := strconv.FormatUint(c.seq.Add(1), 36)
	ch := make(chan *nats.Msg, capacity)
	c.mu.Lock()
	c.wait[token] = ch
	c.mu.Unlock()
	return c.inbox + token, ch, func() {
		c.mu.Lock()
		delete(c.wait, token)
		c.mu.Unlock()
	}
}

// Update pushes an account JWT to every server's resolver. It returns the
// per-server result; the error is a *RefusedError when any server refused or
// none stored it, and ErrTimeout when none answered.
func (c *Client) Update(ctx context.Context, accountJWT string) (Result, error) {
	return c.claims(ctx, SubjectClaimsUpdate, []byte(accountJWT))
}

// Delete sends a signed delete request (a generic JWT listing accounts,
// signed by an operator key) to every server's resolver, with the same
// result and errors as Update.
func (c *Client) Delete(ctx context.Context, token string) (Result, error) {
	return c.claims(ctx, SubjectClaimsDelete, []byte(token))
}

// Lookup asks the resolver for the JWT it holds for an account. The first
// answer wins.
func (c *Client) Lookup(ctx context.Context, pub string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, fmt.Sprintf(subjectLookupFormat, pub), nil)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			return "", fmt.Errorf("lookup %s: %w", pub, ErrTimeout)
		}
		return "", fmt.Errorf("lookup %s: %w", pub, err)
	}
	return string(m.Data), nil
}

func (c *Client) claims(ctx context.Context, subject string, data []byte) (Result, error) {
	known := c.known()
	reply, ch, done := c.open(2*len(known) + 4)
	defer done()
	timer := time.NewTimer(c.opts.Timeout)
	if !c.awaitConnected(ctx, timer.C) {
		return nil, fmt.Errorf("resolver: %w: not connected to NATS within %s", ErrNotSent, c.opts.Timeout)
	}
	if err := c.nc.PublishRequest(subject, reply, data); err != nil {
		return nil, fmt.Errorf("resolver: %w: publish %s: %w", ErrNotSent, subject, err)
	}
	defer timer.Stop()

	// Servers are counted, not matched by ID: a restarted server answers
	// with a new ID, and should not make the push wait for its old one.
	answered := map[string]bool{}
	var res Result
	var refusals []string
	noResponders := false
	// With no server known yet there is nothing to wait for but the first
	// answer.
	for len(answered) == 0 || len(answered) < len(known) {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-timer.C:
		case <-ctx.Done():
		}
		if m == nil {
			break
		}
		if isNoResponders(m) {
			// Nobody subscribes to the claims API: no resolver anywhere.
			noResponders = true
			break
		}
		rep, refusal := decodeClaimsReply(m.Data)
		if !slices.ContainsFunc(known, func(s serverID) bool { return s.ID == rep.ServerID }) {
			c.triggerRefresh()
		}
		answered[rep.ServerID] = true
		res = append(res, rep)
		if refusal != "" {
			refusals = append(refusals, refusal)
		}
	}
	if missing := len(known) - len(answered); missing > 0 && !noResponders {
		// A server that went away keeps every later push waiting for it
		// until the list is refreshed.
		c.triggerRefresh()
		for _, s := range known {
			if missing == 0 {
				break
			}
			if answered[s.ID] {
				continue
			}
			missing--
			res = append(res, Reply{
				Server:   s.Name,
				ServerID: s.ID,
				Code:     504,
				Message:  fmt.Sprintf("no answer within %s; it catches up through the resolver's own sync", c.opts.Timeout),
			})
		}
	}
	slices.SortFunc(res, func(a, b Reply) int { return strings.Compare(a.Server+a.ServerID, b.Server+b.ServerID) })
	switch {
	case len(refusals) > 0:
		slices.Sort(refusals)
		return res, &RefusedError{Result: res, Reason: strings.Join(refusals, "; ")}
	case noResponders && res.answered() == 0:
		return res, fmt.Errorf("resolver: %w: nothing listens on %s (is the server in operator mode with a full resolver?)", ErrNotSent, subject)
	case res.answered() == 0:
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("resolver: %s: %w (%w)", subject, ErrTimeout, err)
		}
		return res, fmt.Errorf("resolver: %s: %w within %s", subject, ErrTimeout, c.opts.Timeout)
	case res.Stored() == 0:
		return res, &RefusedError{Result: res, Reason: "no server has a full resolver that stored it (only cache resolvers answered)"}
	}
	return res, nil
}

// awaitConnected waits, while the connection is reconnecting, until it is
// back, the timeout fires or ctx ends. A push connection keeps no reconnect
// buffer (a push must not land after its request was answered), so a push
// sent in the first moments after a server restart would otherwise fail.
// It reports false when it gave up.
func (c *Client) awaitConnected(ctx context.Context, timeout <-chan time.Time) bool {
	if !c.nc.IsReconnecting() {
		return true
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for c.nc.IsReconnecting() {
		select {
		case <-tick.C:
		case <-timeout:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (r Result) answered() int {
	n := 0
	for _, rep := range r {
		if rep.Answered {
			n++
		}
	}
	return n
}

// isNoResponders tells the server's "503 no responders" status message,
// sent when nobody subscribes to a request's subject, from a reply.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}

// decodeClaimsReply turns one server's answer into a Reply, and returns the
// reason when the server refused.
func decodeClaimsReply(data []byte) (Reply, string) {
	var cr claimsReply
	if err := json.Unmarshal(data, &cr); err != nil {
		return Reply{Answered: true, Code: 500, Message: "unreadable reply: " + err.Error()}, "unreadable reply from a server"
	}
	rep := Reply{Answered: true}
	if cr.Server != nil {
		rep.Server, rep.ServerID = cr.Server.Name, cr.Server.ID
	}
	who := rep.Server
	if who == "" {
		who = rep.ServerID
	}
	switch {
	case cr.Error != nil:
		rep.Code, rep.Message = cr.Error.Code, cr.Error.Description
		return rep, fmt.Sprintf("server %s: %s", who, cr.Error.Description)
	case cr.Data != nil:
		rep.Code, rep.Message = cr.Data.Code, cr.Data.Message
		// A delete answers "deleted N accounts"; an update "jwt updated".
		// The cache resolver's answers are 200s that store nothing.
		rep.Stored = rep.Code == 200 && rep.Message != msgCacheSkipped && rep.Message != msgCacheUpdated
		return rep, ""
	}
	rep.Code, rep.Message = 500, "reply with neither data nor error"
	return rep, fmt.Sprintf("server %s: reply with neither data nor error", who)
}

// known returns the servers expected to answer, asking for them first if
// none are known yet.
func (c *Client) known() []serverID {
	if s := c.servers.Load(); s != nil && len(*s) > 0 {
		return *s
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	if err := c.refresh(ctx); err != nil {
		c.log.Warn("resolver could not list the servers", "error", err)
	}
	if s := c.servers.Load(); s != nil {
		return *s
	}
	return nil
}

func (c *Client) triggerRefresh() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Client) refreshLoop() {
	defer close(c.done)
	t := time.NewTicker(c.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
		if err := c.refresh(ctx); err != nil {
			c.log.Warn("resolver could not refresh the server list", "error", err)
		}
		cancel()
	}
}

// quietGap is how long refresh waits after the last ping reply before it
// decides that every server has answered.
const quietGap = 150 * time.Millisecond

// refresh pings every server and records which answered.
func (c *Client) refresh(ctx context.Context) error {
	if !c.refreshing.CompareAndSwap(false, true) {
		return nil
	}
	defer c.refreshing.Store(false)
	reply, ch, done := c.open(1024)
	defer done()
	if err := c.nc.PublishRequest(SubjectServerPing, reply, nil); err != nil {
		return fmt.Errorf("ping servers: %w", err)
	}
	deadline := time.NewTimer(c.opts.Timeout)
	defer deadline.Stop()
	var quiet <-chan time.Time
	seen := map[string]serverID{}
	for {
		select {
		case m := <-ch:
			if isNoResponders(m) {
				return errors.New("no server answers " + SubjectServerPing)
			}
			var id serverID
			if err := json.Unmarshal(m.Data, &id); err == nil && id.ID != "" {
				seen[id.ID] = id
			}
			quiet = time.After(quietGap)
			continue
		case <-quiet:
		case <-deadline.C:
		case <-ctx.Done():
		}
		break
	}
	if len(seen) == 0 {
		return errors.New("no server answered " + SubjectServerPing)
	}
	list := make([]serverID, 0, len(seen))
	for _, s := range seen {
		list = append(list, s)
	}
	slices.SortFunc(list, func(a, b serverID) int { return strings.Compare(a.ID, b.ID) })
	if old := c.servers.Load(); old == nil || len(*old) != len(list) {
		c.log.Info("resolver servers", "count", len(list))
	}
	c.servers.Store(&list)
	return nil
}

package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/provision"
)

// quietGap is how long a refresh waits, once every server it expected has
// answered, for servers it did not know of.
const quietGap = 150 * time.Millisecond

// pingTimeout bounds how long a refresh waits for a server it knows to be
// up before it marks it down.
const pingTimeout = 2 * time.Second

// Servers returns the known servers sorted by name: those up, and those
// down that have not yet been gone for Options.ForgetAfter. A server
// without server_name (named by its ID, new at each start) is forgotten as
// soon as it shuts down: it never answers under that name again.
func (c *Client) Servers() []provision.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgetLocked(time.Now())
	out := make([]provision.Server, 0, len(c.servers))
	for _, s := range c.servers {
		srv := *s
		if c.noResolver[s.Name] == s.ID {
			// Not waited for, as a cache resolver is not: it stores
			// nothing pushed and answers nothing.
			srv.Cache = true
			srv.NoResolver = true
			// A full resolver whose claims requests wait (a stalled
			// disk: nats-server answers pings apart from them) is
			// taken for one with no resolver until it answers, and
			// may hold any account meanwhile; silent for as long as a
			// down server stays known, it is taken for gone as one.
			srv.NoResolverLong = time.Since(c.noResolverAt[s.Name]) >= c.opts.ForgetAfter
		}
		_, srv.Shared = c.shared[s.Name]
		out = append(out, srv)
	}
	slices.SortFunc(out, func(a, b provision.Server) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Joined delivers a server each time one starts answering after New
// returned: a new name, a known name with a new ID (a restart, possibly from
// an old disk), or a server that was down and answers again. The servers
// found by New's first ping are not delivered. The channel holds 64
// servers; when it is full the oldest is dropped (and logged), so a reader
// must also check Servers now and then. Close closes it.
func (c *Client) Joined() <-chan provision.Server {
	return c.joined
}

// downSignal returns a channel that is closed when a server next goes
// down or is replaced by a restart.
func (c *Client) downSignal() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.downCh
}

// isUpAs reports whether the named server is known and up with the given
// ID: an instance replaced by a restart is not.
func (c *Client) isUpAs(name, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.servers[name]
	return s != nil && s.Up && s.ID == id
}

// currentID returns the ID of the named server's current instance, if the
// server is known.
func (c *Client) currentID(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.servers[name]; s != nil {
		return s.ID, true
	}
	return "", false
}

// updateUp returns list with each server's Up as it is now; an instance
// that was replaced by a restart (another ID under its name) is down, and
// so is a server forgotten since (one without server_name that shut
// down): kept up, it was reported silent.
func (c *Client) updateUp(list []provision.Server) []provision.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range list {
		now := c.servers[s.Name]
		list[i].Up = now != nil && now.Up && now.ID == s.ID
	}
	return list
}

func (c *Client) upCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.servers {
		if s.Up {
			n++
		}
	}
	return n
}

// sighted records a sign of life from a server, from an event or a reply.
// A server ID not seen before also sets off a refresh: the list of servers
// may have changed in other ways.
func (c *Client) sighted(name, id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	_, known := c.ids[id]
	c.observeLocked(name, id, time.Now())
	c.mu.Unlock()
	if !known {
		c.triggerRefresh()
	}
}

// observeLocked marks the server up under its current ID and announces it
// when it is new, restarted or back.
func (c *Client) observeLocked(name, id string, now time.Time) {
	if name == "" {
		name = id
	}
	if _, ok := c.retired[id]; ok {
		// An instance that shut down or was replaced by a restart: a
		// reply sent before it went, which the client took in after the
		// SHUTDOWN event (replies and events come on different
		// subscriptions). It is not coming back: a server that starts
		// again has a new ID.
		c.log.Debug("resolver ignored a late reply from a server instance that is gone", "server", name, "server_id", id)
		return
	}
	s := c.servers[name]
	var why string
	switch {
	case s == nil:
		s = &provision.Server{Name: name}
		c.servers[name] = s
		why = "new"
	case s.ID != id:
		delete(c.ids, s.ID)
		c.retired[s.ID] = now
		// The old instance is gone, with or without a SHUTDOWN event (a
		// kill -9 sends none): requests waiting for it stop, the new one
		// never got them.
		close(c.downCh)
		c.downCh = make(chan struct{})
		why = "restarted"
	case !s.Up:
		why = "back"
	}
	if s.ID != id {
		// A new instance may run another resolver: its next answer to
		// a push says which.
		s.Cache = false
	}
	s.ID, s.Up, s.LastSeen = id, true, now
	c.ids[id] = name
	if why == "" {
		return
	}
	c.log.Info("resolver server up", "server", name, "server_id", id, "why", why)
	if c.ready && !c.closed {
		c.announceLocked(*s)
	}
}

// announceLocked queues a server on Joined, dropping the oldest queued one
// when the channel is full. Only announceLocked sends, under c.mu, so after
// one receive there is room.
func (c *Client) announceLocked(s provision.Server) {
	for {
		select {
		case c.joined <- s:
			return
		default:
		}
		select {
		case old := <-c.joined:
			c.log.Warn("resolver Joined channel full; dropped the oldest", "dropped", old.Name, "dropped_id", old.ID)
		default:
		}
	}
}

// noteResolver records whether the server instance that answered a push
// runs a cache resolver; an answer from an instance that is not the
// server's current one is ignored.
func (c *Client) noteResolver(name, id string, cache bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.servers[name]; s != nil && s.ID == id && s.Cache != cache {
		s.Cache = cache
		c.log.Info("resolver server's resolver type", "server", name, "server_id", id, "cache", cache)
	}
}

// isCache reports whether the server instance runs a cache resolver, as
// its last answer to a push said (a DELETE's answer does not say).
func (c *Client) isCache(name, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.servers[name]
	return s != nil && s.ID == id && s.Cache
}

// answeredClaims notes that the server instance answered a claims
// request: it has a resolver, whatever it was suspected of. An answer from
// an instance that is not the server's current one (a late reply from one
// replaced by a restart) says nothing of the current one: noted, it put
// that instance's answer in the current one's place, and the current one,
// slow once, was taken for a server without a resolver.
func (c *Client) answeredClaims(name, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if name == "" {
		name = id
	}
	if s := c.servers[name]; s == nil || s.ID != id {
		return
	}
	c.claimsAnswered[name] = id
	delete(c.suspects, name)
	if c.noResolver[name] == id {
		delete(c.noResolver, name)
		c.log.Info("resolver server answers claims requests again; waited for", "server", name, "server_id", id)
	}
}

// suspectSilent notes the servers of want that did not answer a claims
// request (got) and have never answered one: the next ping tells whether
// they are up, and so answer no claims request at all.
func (c *Client) suspectSilent(want map[string]string, got map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, id := range want {
		if !got[name] && c.claimsAnswered[name] != id {
			c.suspects[name] = id
		}
	}
}

// sharedPings is how many refreshes a name stays shared once only one
// instance answers under it.
const sharedPings = 10

// isShared reports whether two server instances have lately answered one
// ping under the name (see Client.shared).
func (c *Client) isShared(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.shared[name]
	return ok
}

// hasNoResolver reports whether the server instance is known to answer no
// claims request.
func (c *Client) hasNoResolver(name, id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.noResolver[name] == id
}

// markDownLocked marks a server down; it stays known until ForgetAfter.
func (c *Client) markDownLocked(s *provision.Server, reason string) {
	if !s.Up {
		return
	}
	s.Up = false
	close(c.downCh)
	c.downCh = make(chan struct{})
	c.log.Info("resolver server down", "server", s.Name, "server_id", s.ID, "reason", reason)
}

// forgetLocked drops the servers that have been down for ForgetAfter, and
// the replaced IDs as old.
func (c *Client) forgetLocked(now time.Time) {
	for name, s := range c.servers {
		if !s.Up && now.Sub(s.LastSeen) >= c.opts.ForgetAfter {
			c.dropLocked(s)
			c.log.Info("resolver forgot a server", "server", name, "server_id", s.ID, "last_seen", s.LastSeen)
		}
	}
	for id, at := range c.retired {
		if now.Sub(at) >= c.opts.ForgetAfter {
			delete(c.retired, id)
		}
	}
	// A name two instances answer under is marked again at every ping
	// both answer; one alone for sharedPings refreshes is no longer
	// shared (the duplicate renamed or gone, a leaf's old and new
	// instance overlapping once). Kept for ForgetAfter, it held every
	// delete that long.
	for name, at := range c.shared {
		if now.Sub(at) >= min(c.opts.ForgetAfter, sharedPings*c.opts.RefreshInterval) {
			delete(c.shared, name)
		}
	}
}

// dropLocked forgets a server and what is known of its resolver.
func (c *Client) dropLocked(s *provision.Server) {
	delete(c.servers, s.Name)
	delete(c.ids, s.ID)
	delete(c.claimsAnswered, s.Name)
	delete(c.suspects, s.Name)
	delete(c.noResolver, s.Name)
	delete(c.noResolverAt, s.Name)
}

// onStatsz handles $SYS.SERVER.<id>.STATSZ: a server sends it soon after it
// starts and then periodically.
func (c *Client) onStatsz(m *nats.Msg) {
	id := subjectServerID(m.Subject)
	var ev struct {
		Server serverInfo `json:"server"`
	}
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		c.log.Debug("resolver could not read a server event", "subject", m.Subject, "error", err)
		return
	}
	if ev.Server.ID != "" {
		id = ev.Server.ID
	}
	c.sighted(ev.Server.Name, id)
}

// onShutdown handles $SYS.SERVER.<id>.SHUTDOWN: the server marks down at
// once, if the ID is its current one.
func (c *Client) onShutdown(m *nats.Msg) {
	id := subjectServerID(m.Subject)
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.ids[id]
	if !ok {
		return
	}
	s := c.servers[name]
	s.LastSeen = time.Now()
	c.retired[id] = s.LastSeen
	c.markDownLocked(s, "shut down")
	if name == id {
		// A server without server_name, which nats-server names by its
		// ID, new at each start: this name never answers again (the
		// server's disk comes back as a new server, which Joined
		// announces). Kept for ForgetAfter, it held everything that
		// waits for every known server (a delete's DELETE, a
		// tombstone's drop, an operator rotation) that long after each
		// restart.
		c.dropLocked(s)
		c.log.Info("resolver forgot a server without server_name that shut down; give each server a server_name", "server", name)
	}
}

// subjectServerID returns the <id> of $SYS.SERVER.<id>.<event>.
func subjectServerID(subject string) string {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 {
		return ""
	}
	return parts[2]
}

// CheckServers pings the servers now, in the background, rather than at
// the next refresh: something other than a request (the store's stream
// without a leader) says a server may have gone away without a word (kill
// -9, a machine lost), which no event announces. Until a ping marks it
// down, every push waits the whole Timeout for it; stacked on the store's
// own wait through a stream leader's failover, a change caught in it was
// answered past its caller's timeout.
func (c *Client) CheckServers() { c.triggerRefresh() }

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
	// A refresh asked for while the connection is down (CheckServers, a
	// request's overdue answers: a server may have gone with the machine
	// the connection was on) is held until it is back. Dropped, the dead
	// server stayed up until the next refresh, and every push until then
	// waited for it.
	reconnected := c.nc.StatusChanged(nats.CONNECTED)
	defer c.nc.RemoveStatusListener(reconnected)
	pending := false
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
		case <-reconnected:
			if !pending {
				continue
			}
		}
		if !c.nc.IsConnected() {
			// Nothing can be learned; a ping now would mark every server
			// down for the client's own outage.
			pending = true
			continue
		}
		pending = false
		// Bounded by the refresh's own deadline and by Close: a context
		// deadline racing that one would end the refresh before it marks
		// the silent servers down.
		// A refresh cut by the connection's drop is the client's own
		// outage, which the connection's handlers log; logged here, it
		// came at every stop too (the server or the connection going
		// first), after the stop had returned.
		err := c.refresh(context.Background())
		if errors.Is(err, errLostPing) {
			// Its ping, or the answers, lost with the connection: asked
			// again once it is back (its CONNECTED waits in reconnected
			// if it is back already).
			pending = true
		}
		if err != nil && !errors.Is(err, errLostPing) && !errors.Is(err, errClosed) {
			c.log.Warn("resolver could not refresh the server list", "error", err)
		}
	}
}

// refreshIfNoneUp refreshes unless, once any refresh under way is done, a
// server is up.
func (c *Client) refreshIfNoneUp(ctx context.Context) error {
	if err := c.lockRefresh(ctx); err != nil {
		return err
	}
	defer c.unlockRefresh()
	if c.upCount() > 0 {
		return nil
	}
	return c.refreshLocked(ctx, false)
}

func (c *Client) refresh(ctx context.Context) error {
	if err := c.lockRefresh(ctx); err != nil {
		return err
	}
	defer c.unlockRefresh()
	return c.refreshLocked(ctx, false)
}

// Discover pings every server and waits the whole ping timeout (the
// smaller of Options.Timeout and 2s) for their answers, not only until the
// servers known have answered and quietGap more: a server that answers
// later (busy, paused, across a gateway) is known when it returns. A
// refresh does not wait for such a server, which stays unknown until its
// next STATSZ event (up to 10s) or the next refresh; what must hear from
// every server before it changes anything (an operator signing-key
// rotation) calls Discover first. The error is as a refresh's: nothing
// answered, the connection dropped, or ctx ended or the client closed
// before the wait was over.
func (c *Client) Discover(ctx context.Context) error {
	if err := c.lockRefresh(ctx); err != nil {
		return fmt.Errorf("resolver: discover the servers: %w", err)
	}
	defer c.unlockRefresh()
	if err := c.refreshLocked(ctx, true); err != nil {
		return fmt.Errorf("resolver: discover the servers: %w", err)
	}
	return nil
}

// lockRefresh waits until no other refresh runs, or ctx ends (its error),
// or the client closes (errClosed). Waited for
// with a mutex, a request that found no server up (a stalled link, the
// connection still open) waited for the refresh or Discover under way, up
// to the whole ping timeout, past its own deadline or a stop.
func (c *Client) lockRefresh(ctx context.Context) error {
	select {
	case c.refreshing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return errClosed
	}
}

// errClosed: the client closed while waiting for the refresh under way,
// or during the refresh.
var errClosed = errors.New("client closed")

// unlockRefresh ends what lockRefresh began.
func (c *Client) unlockRefresh() { <-c.refreshing }

// errLostPing: the connection dropped while a refresh waited for the
// answers to its ping.
var errLostPing = errors.New("the connection to NATS dropped while waiting for the answers to " + SubjectServerPing)

// errNoServer: a refresh heard from no server.
var errNoServer = errors.New("no server answered " + SubjectServerPing)

// refreshLocked pings every server. Each that answers is up; one that was
// up and stays silent until the timeout is marked down. It waits for every
// server it knows to be up, then quietGap more for others; with full, until
// the timeout. When ctx ends or the client closes first, it marks nothing
// down and returns an error: the wait was cut short.
func (c *Client) refreshLocked(ctx context.Context, full bool) error {
	start := time.Now()
	want := map[string]bool{}
	c.mu.Lock()
	c.forgetLocked(start)
	for name, s := range c.servers {
		if s.Up {
			want[name] = true
		}
	}
	c.mu.Unlock()

	reply, ch, done := c.open(1024)
	defer done()
	reconnects := c.nc.Stats().Reconnects
	if err := c.nc.PublishRequest(SubjectServerPing, reply, nil); err != nil {
		return fmt.Errorf("ping servers: %w", err)
	}
	// A server answers a ping at once; one that has not within
	// pingTimeout is gone, and every request waits for it until it is
	// marked down.
	deadline := time.NewTimer(min(c.opts.Timeout, pingTimeout))
	defer deadline.Stop()
	var quiet <-chan time.Time
	seen := map[string]string{} // name -> ID
	missing := len(want)
wait:
	for {
		select {
		case m := <-ch:
			if isNoResponders(m) {
				return errors.New("nothing answers " + SubjectServerPing)
			}
			var id serverInfo
			if err := json.Unmarshal(m.Data, &id); err != nil || id.ID == "" {
				continue
			}
			if id.Name == "" {
				id.Name = id.ID
			}
			c.mu.Lock()
			_, gone := c.retired[id.ID]
			if cur := c.servers[id.Name]; gone && cur != nil && cur.ID != id.ID {
				// An instance taken for replaced by a restart (another
				// ID under its name announced itself first: a STATSZ
				// event, a claims reply) answers this ping: it is not
				// gone, a second server has its name. Skipped alone,
				// the name was never marked shared, and what the other
				// confirmed stood for both.
				c.shared[id.Name] = time.Now()
			}
			c.mu.Unlock()
			if gone {
				continue // an instance that is gone, or shares its name
			}
			if prev, ok := seen[id.Name]; ok && prev != id.ID {
				c.log.Warn("resolver: two servers answer with the same name", "server", id.Name, "server_id", id.ID, "other_id", prev)
				c.mu.Lock()
				c.shared[id.Name] = time.Now()
				c.mu.Unlock()
				continue
			}
			if _, ok := seen[id.Name]; !ok {
				seen[id.Name] = id.ID
				if want[id.Name] {
					missing--
				}
			}
			// Not sighted: an unknown ID must not set off another refresh.
			c.mu.Lock()
			c.observeLocked(id.Name, id.ID, time.Now())
			if c.suspects[id.Name] == id.ID {
				// Up, yet it answered no claims request: its resolver
				// is none that answers them (MEMORY or URL). Waited
				// for, it cost every push the whole timeout and kept
				// every delete disabled for ever.
				delete(c.suspects, id.Name)
				c.noResolver[id.Name] = id.ID
				c.noResolverAt[id.Name] = time.Now()
				c.log.Warn("resolver server answers the server ping but no claims request: its resolver is not a full or cache one (MEMORY or URL?); no push, delete or lookup waits for it, and it gets no account pushed", "server", id.Name, "server_id", id.ID)
			}
			c.mu.Unlock()
			if missing <= 0 && !full {
				quiet = time.After(quietGap)
			}
		case <-quiet:
			break wait
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		case <-c.stop:
			// Cut short, as by ctx: nil told Discover's caller it had
			// heard from every server.
			return errClosed
		}
	}
	if !c.nc.IsConnected() || c.nc.Stats().Reconnects != reconnects {
		// The silence may be the client's own outage: the ping, or the
		// answers, lost with a connection that dropped (and may be
		// back) since the ping was sent. Nothing is marked down, and
		// what waits on hearing from every server (Discover) is told
		// it did not.
		return errLostPing
	}
	c.mu.Lock()
	for name := range want {
		if _, ok := seen[name]; ok {
			continue
		}
		if s := c.servers[name]; s != nil && s.LastSeen.Before(start) {
			c.markDownLocked(s, "missed the server ping")
		}
	}
	c.mu.Unlock()
	if len(seen) == 0 {
		return errNoServer
	}
	return nil
}

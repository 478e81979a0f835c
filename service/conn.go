package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/config"
)

// conn is one of the service's NATS connections.
type conn struct {
	nc     *nats.Conn
	name   string
	creds  string
	closed chan struct{}

	mu          sync.Mutex
	denied      []string // permission violations the server reported
	reconnected func()
}

// The pings of every connection: see connect.
const (
	connPingInterval = 2 * time.Second
	connMaxPingsOut  = 2
)

// connect opens a connection with a creds file that reconnects forever. The
// first connection is retried with back-off until ctx ends, logging each
// try: a provisioner started before its nats-server (a container, a
// reboot) waits for it instead of exiting.
func (s *Service) connect(ctx context.Context, cfg *config.Config, name, creds, inbox string, extra ...nats.Option) (*conn, error) {
	c := &conn{name: name, creds: creds, closed: make(chan struct{})}
	log := s.log.With("connection", name)
	opts := []nats.Option{
		checkedCreds(creds, log),
		// The creds `provisioner init` writes may subscribe to their own
		// inbox prefix only, so that no other holder reads the replies.
		nats.CustomInboxPrefix(inbox),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// A server whose machine is lost without a TCP reset (a power
		// cut, a partition) leaves the connection open and silent: with
		// nats.go's default pings (every 2 minutes, two unanswered) it
		// was called stale only 4 to 6 minutes later, and until then
		// the instance answered nothing, its subscriptions and pushes on
		// that server, while the cluster's others were there. A PING
		// every 2 s costs nothing; two unanswered (4-6 s) make the
		// connection go over to another server.
		nats.PingInterval(connPingInterval),
		nats.MaxPingsOutstanding(connMaxPingsOut),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: a drain on the way out
				log.Warn("disconnected from NATS", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
			c.mu.Lock()
			f := c.reconnected
			c.mu.Unlock()
			if f != nil {
				f()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.mu.Lock()
				c.denied = append(c.denied, err.Error())
				c.mu.Unlock()
			}
			log.Error("NATS error", "subject", subj, "error", err)
		}),
	}
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(cfg.NATSURL, append(opts, extra...)...)
		if err == nil {
			c.nc = nc
			s.conns = append(s.conns, c)
			return c, nil
		}
		// url.Parse's error quotes the URL, password included, and no
		// wait makes it parse (config.Validate refuses it first).
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return nil, fmt.Errorf("connect to %s: nats_url is not a URL", config.RedactURL(cfg.NATSURL))
		}
		if !retryable(err) {
			return nil, fmt.Errorf("connect to %s with %s: %w", config.RedactURL(cfg.NATSURL), creds, err)
		}
		log.Warn("NATS is not reachable yet; retrying", "url", config.RedactURL(cfg.NATSURL), "attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("connect to %s: %w (gave up: %w)", config.RedactURL(cfg.NATSURL), err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// retryable tells a server that is not there yet from creds it refuses:
// the first is waited for, the second is a configuration error.
func retryable(err error) bool {
	return !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired) &&
		!errors.Is(err, nats.ErrAuthRevoked) && !strings.Contains(err.Error(), "Authorization Violation") &&
		!strings.Contains(err.Error(), "nkey") && !strings.Contains(err.Error(), "creds")
}

// onReconnect calls f after every reconnect.
func (c *conn) onReconnect(f func()) {
	c.mu.Lock()
	c.reconnected = f
	c.mu.Unlock()
}

// permitted waits for the server's answer to everything sent so far on the
// connection and fails, naming the creds and what they lack, when the
// server refused a subscription or a publish. A server that goes away
// meanwhile is waited for (the subscriptions are made again on reconnect,
// and refused again if they must be), until ctx ends.
func (c *conn) permitted(ctx context.Context) error {
	for {
		// A round trip after the subscriptions and the first requests: a
		// refusal is sent before the PONG.
		err := c.nc.FlushTimeout(5 * time.Second)
		if err == nil {
			break
		}
		if c.nc.IsClosed() {
			return fmt.Errorf("connection %s: %w", c.name, err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("connection %s: %w (gave up: %w)", c.name, err, ctx.Err())
		case <-t.C:
		}
	}
	// The error handler runs on its own goroutine: give it a moment, and
	// read the connection's last error too, which is set before the PONG.
	time.Sleep(50 * time.Millisecond)
	return c.deniedError()
}

// deniedError names the creds and what the server refused them, or is nil.
func (c *conn) deniedError() error {
	c.mu.Lock()
	denied := append([]string(nil), c.denied...)
	c.mu.Unlock()
	if err := c.nc.LastError(); err != nil && errors.Is(err, nats.ErrPermissionViolation) && !slices.Contains(denied, err.Error()) {
		denied = append(denied, err.Error())
	}
	if len(denied) == 0 {
		return nil
	}
	return fmt.Errorf("the creds %s may not do what the provisioner needs (%s); the server said: %s. Use the creds `provisioner init` wrote for it (provisioner.creds as nats_creds, service.creds as service_creds), or give these creds those permissions",
		c.creds, c.name, strings.Join(denied, "; "))
}

// close drains the connection and waits until it is closed, for at most
// within. A server that is paused or cut off without a reset (a host gone,
// a partition) leaves the connection looking connected, and nats.go's
// drain then waits out its flushes (10 s a subscription, then 5 s for the
// publishes) before it closes: four connections one after another took a
// stop past the 30 s a container is given. Past within, what the drain has
// not sent is given up and the connection closed, which is logged and is
// no failed stop (the server is away, as in an outage).
func (c *conn) close(within time.Duration, log *slog.Logger) error {
	err := c.nc.Drain()
	if err != nil {
		c.nc.Close()
	}
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case <-c.closed:
	case <-t.C:
		log.Warn("NATS connection not drained in time; closed", "connection", c.name, "waited", within)
		c.nc.Close()
		<-c.closed
	}
	return err
}

// checkedCreds is nats.UserCredentials(path) with the file checked at every
// connect (config.CredsJWT), not only at the start: nats.go reads the file
// again at each reconnect and sends its first block as the CONNECT's JWT,
// so a creds file replaced by a seed file while the service ran went to
// the server at the next reconnect, which published it in its auth error
// event for every system-account user that follows those events. The
// connect fails instead, logged once until the file is good again.
func checkedCreds(path string, log *slog.Logger) nats.Option {
	var bad atomic.Bool
	return nats.UserJWT(func() (string, error) {
		token, err := config.CredsJWT(path)
		if err != nil {
			if !bad.Swap(true) {
				log.Error("the creds file no longer holds a user JWT; not connecting with it until it does", "error", err)
			}
			return "", err
		}
		bad.Store(false)
		return token, nil
	}, func(nonce []byte) ([]byte, error) {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		kp, err := nkeys.ParseDecoratedNKey(raw)
		clear(raw)
		if err != nil {
			// Its error is left out: what it quotes is the file's.
			return nil, fmt.Errorf("%s holds no seed", path)
		}
		defer kp.Wipe()
		return kp.Sign(nonce)
	})
}

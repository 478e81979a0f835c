// Package service assembles a running provisioner from its configuration:
// the NATS connection, the operator signing key, the key store, the
// resolver client, the provisioning domain and the responder. The serve,
// dev and bench commands all start it the same way.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/keystore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
	"github.com/natsprov/provisioner/responder"
)

// Version is the provisioner's version, shown by `nats micro info`.
const Version = "0.1.0"

// Service is a running provisioner.
type Service struct {
	// NC carries the requests and replies; PushNC carries the resolver
	// traffic. A server handles what a connection publishes in order, and
	// an UPDATE costs it a file write: on one connection, every reply would
	// wait behind the pushes queued before it.
	NC        *nats.Conn
	PushNC    *nats.Conn
	Store     *keystore.DirStore
	Resolver  *resolver.Client
	Provision *provision.Service
	Responder *responder.Responder
	Operator  *provision.Operator
	log       *slog.Logger
	closed    chan struct{}
	pushDone  chan struct{}
	stopOnce  sync.Once
	stopErr   error
}

// Start checks the operator key, opens the store, connects to NATS and
// starts answering requests. On error everything started is stopped again.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *Service, err error) {
	op, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey)
	if err != nil {
		return nil, err
	}
	s := &Service{Operator: op, log: log, closed: make(chan struct{}), pushDone: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	s.Store, err = keystore.Open(cfg.StoreDir, keystore.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	if s.NC, err = connect(cfg, "provisioner", s.closed, log); err != nil {
		return nil, err
	}
	// No reconnect buffer for pushes: a push made while disconnected must
	// fail at once, not reach the servers later, after the request that
	// made it was answered with a failure and its change undone.
	if s.PushNC, err = connect(cfg, "provisioner-resolver", s.pushDone, log, nats.ReconnectBufSize(-1)); err != nil {
		return nil, err
	}
	s.Resolver, err = resolver.New(ctx, s.PushNC, resolver.Options{Timeout: time.Duration(cfg.ResolverTimeout), Logger: log})
	if err != nil {
		return nil, err
	}
	s.Provision, err = provision.New(provision.Config{
		Operator:   op,
		Store:      s.Store,
		Resolver:   s.Resolver,
		MaxJWTSize: int(s.NC.MaxPayload()),
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	s.Responder, err = responder.New(s.NC, s.Provision, responder.Config{
		Prefix:         cfg.SubjectPrefix,
		Name:           cfg.ServiceName,
		Version:        Version,
		RequestTimeout: time.Duration(cfg.RequestTimeout),
		MaxInflight:    cfg.MaxInflight,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	log.Info("provisioner serving",
		"url", s.NC.ConnectedUrlRedacted(),
		"operator", op.PublicKey,
		"signing_key", op.SignerKey,
		"system_account", op.SystemAccount,
		"prefix", cfg.SubjectPrefix,
		"accounts", s.Store.Len(),
		"servers", len(s.Resolver.Servers()))
	return s, nil
}

// Stop drains the service: no new requests, those in flight answered, then
// the store and the connection are closed. Later calls return the first
// call's result.
func (s *Service) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Service) stop() error {
	var first error
	keep := func(err error) {
		// Stopping while the server is away is a normal stop: there is
		// nothing to drain from a connection that is down.
		if errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
			s.log.Info("stopped while disconnected from NATS", "error", err)
			return
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if s.Responder != nil {
		keep(s.Responder.Stop())
	}
	if s.Resolver != nil {
		keep(s.Resolver.Close())
	}
	if s.Provision != nil {
		s.Provision.Close()
	}
	for _, c := range []struct {
		nc     *nats.Conn
		closed chan struct{}
	}{{s.NC, s.closed}, {s.PushNC, s.pushDone}} {
		if c.nc == nil {
			continue
		}
		if err := c.nc.Drain(); err != nil {
			keep(err)
			c.nc.Close()
		}
		<-c.closed
	}
	if s.Store != nil {
		keep(s.Store.Close())
	}
	if s.Operator != nil {
		s.Operator.Signer.Wipe()
	}
	return first
}

// connect opens a connection with the service's creds that reconnects
// forever; closed is closed when the connection is.
func connect(cfg *config.Config, name string, closed chan struct{}, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.UserCredentials(cfg.NATSCreds),
		// provisioner.creds may subscribe to this inbox prefix only.
		nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix),
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: a drain on the way out
				log.Warn("disconnected from NATS", "connection", name, "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "connection", name, "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("NATS error", "connection", name, "subject", subj, "error", err)
		}),
	}
	nc, err := nats.Connect(cfg.NATSURL, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
	}
	return nc, nil
}

// Run starts the service and serves until ctx ends, then stops it.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	s, err := Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("provisioner stopping")
	return s.Stop()
}

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
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/resolver"
	"github.com/natsprov/provisioner/responder"
	"github.com/natsprov/provisioner/seal"
)

// Version is the provisioner's version, shown by `nats micro info`.
const Version = "0.2.0"

// Store is what the service needs of either store: the domain's contract,
// and a Close.
type Store interface {
	provision.Store
}

// Service is a running provisioner.
type Service struct {
	// NC carries the requests and replies; PushNC carries the resolver
	// traffic. A server handles what a connection publishes in order, and
	// an UPDATE costs it a file write: on one connection, every reply would
	// wait behind the pushes queued before it. SvcNC is the connection in
	// the service's own account (the KV store), nil without service_creds.
	NC        *nats.Conn
	PushNC    *nats.Conn
	SvcNC     *nats.Conn
	Store     Store
	Resolver  *resolver.Client
	Provision *provision.Service
	Responder *responder.Responder
	// Self answers tenants' self-service requests on SvcNC; nil without
	// service_creds.
	Self     *responder.Responder
	Operator *provision.Operator
	// ServiceAccount is the public key of the service's own account, ""
	// when the config names no service_creds.
	ServiceAccount string
	events         *events.Publisher
	log            *slog.Logger
	conns          []*conn
	stopRun        context.CancelFunc
	runDone        chan struct{}
	stopOnce       sync.Once
	stopErr        error
	// lost receives the first connection nats.go closed by itself (the
	// server refused its creds twice: expired, revoked); Run ends on it.
	lost chan *conn
	// stopClaim ends the renewal of the instance name's lease
	// (claimInstance); claimDone is closed once it ended. Nil when the
	// name is not claimed.
	stopClaim   context.CancelFunc
	claimDone   chan struct{}
	claimKV     *kvstore.Store
	claimName   string
	claimBucket string
	// nameTaken says, while the renewal finds the instance name's lease
	// held by another process, that two processes answer as this
	// instance; nil otherwise.
	nameTaken atomic.Pointer[string]
	mu        sync.Mutex // orders keep in stop
	health    *health    // nil without health_listen
	// stopping, when set (tests only, export_test.go), is called by Stop
	// once the health endpoint says stopping, before anything stops: a
	// test holds a stop there to see that state, however fast the stop.
	stopping func()
}

// Option changes how Start starts the service.
type Option func(*options)

type options struct {
	fault     *Fault
	unclaimed bool
}

// WithUnclaimedInstance starts without taking the lease on the instance
// name (claimInstance), as an older version did: for tests of what other
// parts do when two processes answer as one instance.
func WithUnclaimedInstance() Option { return func(o *options) { o.unclaimed = true } }

// WithFault installs a test-only fault point (see Fault).
func WithFault(f *Fault) Option { return func(o *options) { o.fault = f } }

// Start checks the operator key, connects to NATS, opens the store, checks
// that the creds may do what the service needs, and starts answering
// requests and reconciling. On error everything started is stopped again.
func Start(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (_ *Service, err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	op, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey)
	if err != nil {
		// The old key of a rotation whose finish this config missed (it
		// names the new key as next) is gone from the operator JWT: the
		// fix is the finish, not another new key as LoadOperator advises.
		if cfg.OperatorSigningKeyNext != "" {
			if next, nerr := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKeyNext); nerr == nil {
				next.Signer.Wipe()
				if old, ok := seedPublicKey(cfg.OperatorSigningKey); ok && !slices.Contains(next.Claims.SigningKeys, old) {
					return nil, fmt.Errorf("operator_signing_key %s is %s, which the operator JWT %s no longer lists, while operator_signing_key_next %s is its signing key %s: the rotation was finished without this config; run `provisioner operator finish --config CONFIG` on it, or set operator_signing_key to %s and remove operator_signing_key_next", cfg.OperatorSigningKey, old, cfg.OperatorJWT, cfg.OperatorSigningKeyNext, next.SignerKey, cfg.OperatorSigningKeyNext)
				}
			}
		}
		return nil, err
	}
	s := &Service{Operator: op, log: log}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if cfg.HealthListen != "" {
		if s.health, err = listenHealth(cfg.HealthListen, cfg.Instance, log); err != nil {
			return nil, err
		}
	}
	var sealKey *seal.Key
	if cfg.SealKey != "" {
		if sealKey, err = seal.Load(cfg.SealKey, cfg.SealKeyPrevious...); err != nil {
			// A previous key's file was named seal_key, whose file is
			// fine: mid-rotation, the wrong one to check.
			field := "seal_key"
			if fe := (*seal.FileError)(nil); errors.As(err, &fe) && fe.Previous {
				field = "seal_key_previous"
			}
			return nil, fmt.Errorf("%s: %w", field, err)
		}
	}
	if cfg.ServiceCreds != "" {
		if s.ServiceAccount, err = credsAccount(cfg.ServiceCreds); err != nil {
			return nil, fmt.Errorf("service_creds: %w", err)
		}
		if s.ServiceAccount == op.SystemAccount {
			return nil, fmt.Errorf("service_creds %s is a user of the system account %s; it must be the provisioner's user in its own account (`provisioner init` writes service.creds): the system account cannot use JetStream, and the service's own account is where the self-service export goes", cfg.ServiceCreds, op.SystemAccount)
		}
	}
	for _, f := range []struct{ field, path string }{{"nats_creds", cfg.NATSCreds}, {"service_creds", cfg.ServiceCreds}} {
		if f.path == "" {
			continue
		}
		// A missing or unreadable creds file is not a server that is not
		// there yet: say so at once instead of retrying. A file that is
		// no creds file is refused before nats.go sends what it holds to
		// the server (config.ReadCreds).
		if _, err := config.ReadCreds(f.path); err != nil {
			return nil, fmt.Errorf("%s: %w", f.field, err)
		}
	}
	for _, f := range []struct{ field, path string }{{"nats_creds", cfg.NATSCreds}, {"service_creds", cfg.ServiceCreds}} {
		if ttl, short := shortResponseTTL(f.path, time.Duration(cfg.RequestTimeout)); short {
			log.Warn("the creds allow a reply to a request for less time than request_timeout lets a request take (allow_responses): the server refuses a later reply, and its caller waits out its timeout for a change that may have been made; reissue the user with a longer response ttl (`nsc edit user --response-ttl`; `provisioner init` writes "+bootstrap.ResponseTTL.String()+")", "field", f.field, "creds", f.path, "response_ttl", ttl.String(), "request_timeout", time.Duration(cfg.RequestTimeout).String())
		}
	}
	if rt, pt := time.Duration(cfg.RequestTimeout), time.Duration(cfg.ResolverTimeout); rt < 2*pt+2*time.Second {
		// A delete makes two claims requests (the disabled version, then
		// the DELETE), each waiting resolver_timeout for a server that
		// does not answer, and a version waits for its second first.
		log.Warn("request_timeout is shorter than two resolver_timeouts and the wait for a version's second: with a server that does not answer, changes are answered 504 while they go on, and may land; the default is 4 resolver_timeouts and 5s", "request_timeout", rt.String(), "resolver_timeout", pt.String())
	}
	sys, err := s.connect(ctx, cfg, "provisioner", cfg.NATSCreds, bootstrap.ProvisionerInboxPrefix)
	if err != nil {
		return nil, err
	}
	s.NC = sys.nc
	// No reconnect buffer for pushes: a push made while disconnected must
	// fail at once, not reach the servers later, after the request that
	// made it was answered with a failure and its change undone.
	push, err := s.connect(ctx, cfg, "provisioner-resolver", cfg.NATSCreds, bootstrap.ProvisionerInboxPrefix, nats.ReconnectBufSize(-1))
	if err != nil {
		return nil, err
	}
	s.PushNC = push.nc
	s.Resolver, err = resolver.New(ctx, s.PushNC, resolver.Options{
		Timeout:     time.Duration(cfg.ResolverTimeout),
		ForgetAfter: time.Duration(cfg.ServerForgetAfter),
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("nats_creds %s: %w", cfg.NATSCreds, err)
	}
	var leader provision.Leader
	switch cfg.StoreKind() {
	case config.StoreFile:
		fs, err := filestore.Open(cfg.StoreDir, filestore.Options{Seal: sealKey, Logger: log})
		if err != nil {
			return nil, err
		}
		s.Store = fs
	default:
		svc, err := s.connect(ctx, cfg, "provisioner-store", cfg.ServiceCreds, bootstrap.ServiceInboxPrefix)
		if err != nil {
			return nil, err
		}
		s.SvcNC = svc.nc
		kv, err := openKV(ctx, svc, kvstore.Options{
			Bucket:   cfg.KVBucket,
			Replicas: cfg.KVReplicas,
			Seal:     sealKey,
			Instance: cfg.Instance,
			Logger:   log,
			// A stream that stops answering has most often lost its
			// leader's server; unless the resolver learns so now, the
			// first pushes after the failover wait resolver_timeout for
			// it, on top of the store's wait.
			StreamUnreadable: s.Resolver.CheckServers,
		}, log)
		if err != nil {
			return nil, err
		}
		s.Store, leader = kv, kv
		if cfg.Instance != config.DefaultInstance() && !o.unclaimed {
			if err := s.claimInstance(ctx, kv, cfg.KVBucket, cfg.Instance); err != nil {
				return nil, err
			}
		}
	}
	if s.ServiceAccount != "" && cfg.StoreKind() == config.StoreFile {
		// The creds of a tenant's user given as service_creds: taken for
		// the service's own account, the tenant's JWT got the self-service
		// export outside the store, and requests could no longer change
		// the account. (A KV store lives in the account of service_creds:
		// there a tenant's creds open another bucket, which holds no
		// tenants.)
		if _, err := s.Store.Account(ctx, s.ServiceAccount); err == nil {
			return nil, fmt.Errorf("service_creds %s is a user of account %s, which this service manages (a tenant's); it must be the provisioner's user in its own account (`provisioner init` writes service.creds)", cfg.ServiceCreds, s.ServiceAccount)
		} else if !errors.Is(err, provision.ErrNotFound) {
			return nil, fmt.Errorf("service_creds: look up its account %s in the store: %w", s.ServiceAccount, err)
		}
	}
	var resolverAPI provision.Resolver = s.Resolver
	if o.fault != nil {
		resolverAPI = &faultResolver{Resolver: s.Resolver, f: o.fault}
	}
	if s.ServiceAccount != "" && s.SvcNC == nil {
		svc, err := s.connect(ctx, cfg, "provisioner-self", cfg.ServiceCreds, bootstrap.ServiceInboxPrefix)
		if err != nil {
			return nil, err
		}
		s.SvcNC = svc.nc
	}
	pub := events.New(s.NC, cfg.SubjectPrefix, log)
	s.events = pub
	var audit provision.AuditLog
	if cfg.StoreKind() == config.StoreJetStream {
		// The audit stream is created like the bucket: on a cluster that
		// is still electing its meta leader, or with another instance
		// creating the same stream, the first attempts can time out.
		replicas := s.Store.(*kvstore.Store).Replicas()
		// The audit writer has a connection of its own, without a
		// reconnect buffer (events.WithAudit): what nats.go keeps while
		// disconnected it sends first on reconnect, before the writer's
		// retries of the events cut off before it, out of order. The
		// store's connection keeps its buffer.
		auditConn, err := s.connect(ctx, cfg, "provisioner-audit", cfg.ServiceCreds, bootstrap.ServiceInboxPrefix, nats.ReconnectBufSize(-1))
		if err != nil {
			return nil, err
		}
		// The refusal of creds that may not use the audit stream (an
		// older init's) is reported on the connection that asked: the
		// audit's, not the store's, else it was taken for JetStream not
		// being up yet, and retried forever.
		if err := waitJetStream(ctx, auditConn, "audit stream", log, func() error {
			err := pub.WithAudit(ctx, auditConn.nc, replicas)
			if kvstore.Transient(err) {
				return fmt.Errorf("%w: %w", provision.ErrUnavailable, err)
			}
			return err
		}); err != nil {
			return nil, err
		}
		if audit, err = events.NewAudit(s.SvcNC, cfg.SubjectPrefix); err != nil {
			return nil, err
		}
	}
	var next func() (*provision.Operator, error)
	if cfg.OperatorSigningKeyNext != "" {
		next = func() (*provision.Operator, error) {
			return provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKeyNext)
		}
	}
	s.Provision, err = provision.New(provision.Config{
		Operator:           op,
		NextOperator:       next,
		Store:              s.Store,
		Resolver:           resolverAPI,
		Leader:             leader,
		Events:             pub,
		Audit:              audit,
		ServiceAccount:     s.ServiceAccount,
		SubjectPrefix:      cfg.SubjectPrefix,
		Instance:           cfg.Instance,
		StoreKind:          cfg.StoreKind(),
		Version:            Version,
		MaxJWTSize:         maxJWTSize(s.NC.MaxPayload(), s.PushNC.MaxPayload()),
		DurableUserRecords: cfg.DurableUserRecords,
		ReconcileInterval:  time.Duration(cfg.ReconcileInterval),
		ReconcileRate:      cfg.ReconcileRate,
		TombstoneRetention: time.Duration(cfg.TombstoneRetention),
		Problem:            s.instanceProblem,
		Logger:             log,
	})
	if err != nil {
		return nil, err
	}
	s.Responder, err = responder.New(ctx, s.NC, s.Provision, responder.Config{
		Prefix:         cfg.SubjectPrefix,
		Name:           cfg.ServiceName,
		Instance:       cfg.Instance,
		Version:        Version,
		RequestTimeout: time.Duration(cfg.RequestTimeout),
		MaxInflight:    cfg.MaxInflight,
		Cut:            s.Provision.Halt,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	// A subscription or publish the creds do not allow is refused by the
	// server asynchronously: wait for the answers to what was sent so far,
	// and refuse to run deaf. Checked before the self-service export is
	// pushed, the self-service subscriptions included, so that a start
	// refused for its prefix, or for service_creds that may not answer
	// self-service, changes no account. (Before the export is there no
	// tenant can reach the self-service responder.)
	if err := s.permitted(ctx); err != nil {
		return nil, err
	}
	if s.SvcNC != nil {
		s.Self, err = responder.NewSelf(ctx, s.SvcNC, s.Provision, responder.Config{
			Prefix:         cfg.SubjectPrefix,
			Name:           cfg.ServiceName + "-self",
			Version:        Version,
			RequestTimeout: time.Duration(cfg.RequestTimeout),
			MaxInflight:    cfg.MaxInflight,
			Cut:            s.Provision.Halt,
			Logger:         log,
		})
		if err != nil {
			return nil, err
		}
		if err := s.permitted(ctx); err != nil {
			return nil, err
		}
		if err := s.Provision.EnsureSelfExport(ctx); err != nil {
			return nil, err
		}
	}
	// A reconnect may land on another server of the cluster, with another
	// max_payload: the largest JWT follows it (the reconnect before these
	// handlers is caught by the call after them).
	jwtSize := func() { s.Provision.SetMaxJWTSize(maxJWTSize(s.NC.MaxPayload(), s.PushNC.MaxPayload())) }
	sys.onReconnect(jwtSize)
	// What is pushed while disconnected may reach no server: reconcile
	// after every reconnect.
	push.onReconnect(func() {
		jwtSize()
		s.Provision.Kick()
	})
	jwtSize()
	runCtx, cancel := context.WithCancel(context.Background())
	s.stopRun, s.runDone = cancel, make(chan struct{})
	go func() {
		defer close(s.runDone)
		s.Provision.Run(runCtx)
	}()
	// A connection nats.go closed by itself never comes back (it
	// reconnects forever, but gives up on creds the server refused twice):
	// Run ends then, so that the process exits and its supervisor restarts
	// it, instead of serving deaf for ever. Stop's own closes come after
	// Run stopped looking.
	s.lost = make(chan *conn, 1)
	for _, c := range s.conns {
		go func() {
			<-c.closed
			select {
			case s.lost <- c:
			default:
			}
		}()
	}
	if s.health != nil {
		s.health.state.Store(s)
	}
	log.Info("provisioner serving",
		"url", s.NC.ConnectedUrlRedacted(),
		"instance", cfg.Instance,
		"store", cfg.StoreKind(),
		"operator", op.PublicKey,
		"signing_key", op.SignerKey,
		"system_account", op.SystemAccount,
		"service_account", s.ServiceAccount,
		"prefix", cfg.SubjectPrefix,
		"servers", len(s.Resolver.Servers()))
	return s, nil
}

// instanceLeaseTTL is how long the lease on an explicit instance name
// outlives its holder's last renewal (every third of it): how long a
// restart after a crash waits for the name.
const instanceLeaseTTL = 5 * time.Second

// claimInstance takes the lease on the instance name for as long as the
// service runs. Two processes started with one explicit "instance" (one
// config copied to a second machine) both answered prov.status.<instance>,
// which the README says that instance alone answers: a prov.reconcile
// answered "running" sent its caller to a subject the other answered too,
// with its own pass. The second is refused instead. A name held by a
// process that crashed is taken over once its lease has not been renewed
// for instanceLeaseTTL; one that a live process renews is never free. The
// default name (host name and process id) is not claimed: it is this
// process's alone, and a lease per process id would pile up in the bucket.
func (s *Service) claimInstance(ctx context.Context, kv *kvstore.Store, bucket, name string) error {
	lease := "instance." + name
	// A crashed holder's lease is taken over after instanceLeaseTTL
	// without a renewal, seen from its first read: twice that and the
	// polls leave room for a slow bucket.
	wait := 2*instanceLeaseTTL + 2*time.Second
	deadline := time.Now().Add(wait)
	var lastErr error
	for logged := false; ; {
		held, err := kv.TryLease(ctx, lease, instanceLeaseTTL)
		if err != nil && !errors.Is(err, provision.ErrUnavailable) {
			return fmt.Errorf("instance %q: take its lease in the bucket: %w", name, err)
		}
		if held {
			break
		}
		lastErr = err
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("instance %q: its lease in the bucket could not be read or taken for %s: %w", name, wait, lastErr)
			}
			return fmt.Errorf("instance %q already runs on bucket %s (another process renews its lease %s): give each instance its own \"instance\" in its config, or leave it out for host name and process id", name, bucket, lease)
		}
		if !logged && err == nil {
			s.log.Warn("another process holds this instance name on the bucket; waiting to see whether it still runs", "instance", name, "wait", wait)
			logged = true
		}
		t := time.NewTimer(instanceLeaseTTL / 10)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("instance %q: wait for its lease: %w", name, ctx.Err())
		case <-t.C:
		}
	}
	s.claimKV, s.claimName, s.claimBucket = kv, name, bucket
	s.renewInstance()
	return nil
}

// renewInstance renews the lease on the instance name (claimInstance)
// every third of its ttl until stopClaim.
func (s *Service) renewInstance() {
	kv, name, bucket := s.claimKV, s.claimName, s.claimBucket
	lease := "instance." + name
	rctx, cancel := context.WithCancel(context.Background())
	s.stopClaim, s.claimDone = cancel, make(chan struct{})
	go func() {
		defer close(s.claimDone)
		tick := time.NewTicker(instanceLeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C:
			}
			held, err := kv.TryLease(rctx, lease, instanceLeaseTTL)
			if rctx.Err() != nil {
				return
			}
			switch {
			case err != nil:
				s.log.Warn("could not renew the lease on the instance name; retrying", "instance", name, "error", err)
			case held:
				// Back (the other process stopped and released it).
				if s.nameTaken.Swap(nil) != nil {
					s.log.Info("this instance name is this process's again on the bucket", "instance", name, "lease", lease)
				}
			case !held:
				// Not renewed for instanceLeaseTTL (the process paused,
				// the bucket away that long): another process took
				// the name meanwhile. The log alone was missed by the
				// checks an operator runs: prov.status's problem and
				// the health endpoint say it too, while it lasts.
				p := fmt.Sprintf("another process took over instance %q on bucket %s (its lease %s) while this one did not renew it (paused, or the bucket away): two processes answer as this instance; stop one", name, bucket, lease)
				if s.nameTaken.Swap(&p) != nil {
					// Said once when it starts, not at each renewal
					// (every 1.7 s) while it lasts: prov.status and the
					// health endpoint keep saying it.
					continue
				}
				s.log.Error("another process took over this instance name on the bucket: two instances now answer as it; stop one", "instance", name, "lease", lease)
			}
		}
	}()
}

// instanceProblem says, while it lasts, that another process holds this
// instance's name (renewInstance).
func (s *Service) instanceProblem() error {
	if p := s.nameTaken.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// permitted waits for the servers' answers to what each connection sent so
// far, and returns the first permission they refused.
func (s *Service) permitted(ctx context.Context) error {
	for _, c := range s.conns {
		if err := c.permitted(ctx); err != nil {
			return err
		}
	}
	return nil
}

// openKV opens the KV store, waiting with back-off while JetStream cannot
// answer yet: a cluster that is starting has no meta leader, and another
// instance may be creating the R3 bucket at the same moment. A refusal
// (no JetStream for the account, a bucket of other settings, no seal key)
// is not waited out.
func openKV(ctx context.Context, c *conn, opts kvstore.Options, log *slog.Logger) (*kvstore.Store, error) {
	var kv *kvstore.Store
	err := waitJetStream(ctx, c, "KV bucket "+opts.Bucket, log, func() (err error) {
		kv, err = kvstore.Open(ctx, c.nc, opts)
		return err
	})
	return kv, err
}

// waitJetStream runs op until it succeeds or fails with something other
// than provision.ErrUnavailable, backing off between attempts, until ctx
// ends.
func waitJetStream(ctx context.Context, c *conn, what string, log *slog.Logger, op func() error) error {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !errors.Is(err, provision.ErrUnavailable) {
			return err
		}
		// A JetStream API call the creds may not make times out like an
		// unavailable one; the server said why.
		if derr := c.deniedError(); derr != nil {
			return derr
		}
		// A connection nats.go closed for good (the server refused its
		// creds twice: expired, revoked) makes every attempt fail
		// "connection closed", which reads as unavailable: retried, the
		// start waited for ever, neither serving nor exiting for its
		// supervisor to restart it.
		if c.nc.IsClosed() {
			return fmt.Errorf("%s: NATS connection %s was closed for good (the server refused the creds %s: %v); nats.go does not reconnect it, so the start fails, for a restart: %w", what, c.name, c.creds, c.nc.LastError(), err)
		}
		log.Warn("JetStream is not available yet; retrying", "what", what, "attempt", attempt, "retry_in", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// credsAccount returns the account of the user in a creds file.
func credsAccount(path string) (string, error) {
	uc, err := config.ReadCreds(path)
	if err != nil {
		return "", err
	}
	if uc.IssuerAccount != "" {
		return uc.IssuerAccount, nil
	}
	return uc.Issuer, nil
}

// defaultResponseTTL is how long the server lets a user with
// allow_responses and no ttl answer a request.
const defaultResponseTTL = 2 * time.Minute

// shortResponseTTL tells whether the user of the creds at path answers
// requests through allow_responses for less time than a request may take
// (requestTimeout, and a little for the reply itself), and what that time
// is. Creds it cannot read, or that answer through other permissions, say
// nothing.
func shortResponseTTL(path string, requestTimeout time.Duration) (time.Duration, bool) {
	if path == "" {
		return 0, false
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return 0, false
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil || uc.Resp == nil {
		return 0, false
	}
	ttl := uc.Resp.Expires
	if ttl <= 0 {
		ttl = defaultResponseTTL
	}
	return ttl, ttl < requestTimeout+5*time.Second
}

// connDrainWait bounds the drain of each connection at the end of a stop,
// when everything the service still had to write has been flushed: with
// the server there a drain takes a round trip; without it (paused, or cut
// off without a reset) waiting longer sends nothing.
const connDrainWait = time.Second

// Stop drains the service: no new requests, those in flight answered, then
// the store and the connection are closed. Later calls return the first
// call's result.
func (s *Service) Stop() error {
	s.stopOnce.Do(func() { s.stopErr = s.stop() })
	return s.stopErr
}

func (s *Service) stop() error {
	if s.health != nil {
		s.health.stopping.Store(true)
		defer s.health.close()
	}
	if s.stopping != nil {
		s.stopping()
	}
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
	// Both responders stop taking requests at once, then drain.
	var wg sync.WaitGroup
	for _, r := range []*responder.Responder{s.Responder, s.Self} {
		if r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := r.Stop()
			s.mu.Lock()
			keep(err)
			s.mu.Unlock()
		}()
	}
	wg.Wait()
	if s.stopRun != nil {
		s.stopRun()
		<-s.runDone
	}
	if s.Provision != nil {
		s.Provision.Close()
	}
	// The store's Close releases the name's lease: renewed after it, the
	// name stayed taken for a whole instanceLeaseTTL.
	if s.stopClaim != nil {
		s.stopClaim()
		<-s.claimDone
	}
	// The audit queue and the store's unconfirmed user records are waited
	// for at the same time: each has its own connection (the audit's, the
	// store's), and one after the other, during an outage, they added up
	// (5 s, then 10 s and the lease release) to a stop past the 30 s a
	// container is given (docker-compose.yml's stop_grace_period).
	var flush sync.WaitGroup
	if s.events != nil {
		flush.Go(func() {
			// Audit writes still in flight go out before the audit's
			// connection closes. What is left after 5 s is lost, and
			// logged as lost (README), but the stop is still a stop:
			// returned, it made serve exit 1 on a SIGTERM during an
			// outage, where the README promises exit 0.
			if err := s.events.Close(5 * time.Second); err != nil {
				// Without an audit stream (the file store) these are
				// the change events on the system account: the error
				// says which.
				s.log.Error("stopped with change events not sent or audit records not stored", "error", err)
			}
		})
	}
	if s.Store != nil {
		flush.Go(func() {
			// User records not confirmed in time are each logged at
			// ERROR by the store; as with the audit, that is no failed
			// stop.
			err := s.Store.Close()
			if errors.Is(err, kvstore.ErrUnconfirmed) {
				s.log.Error("stopped with user records not stored", "error", err)
				return
			}
			s.mu.Lock()
			keep(err)
			s.mu.Unlock()
		})
	}
	flush.Wait()
	if s.Resolver != nil {
		keep(s.Resolver.Close())
	}
	// The store's connection closes after the store, which may still write.
	// The others close at the same time, each within connDrainWait.
	closeAll := func(store bool) {
		var wg sync.WaitGroup
		for _, c := range s.conns {
			if (c.nc == s.SvcNC) != store {
				continue
			}
			wg.Go(func() {
				err := c.close(connDrainWait, s.log)
				s.mu.Lock()
				keep(err)
				s.mu.Unlock()
			})
		}
		wg.Wait()
	}
	closeAll(false)
	closeAll(true)
	if s.Operator != nil {
		s.Operator.Signer.Wipe()
	}
	return first
}

// Run starts the service and serves until ctx ends, then stops it; or until
// a NATS connection is closed for good, then it stops it and fails. A stop
// asked for (ctx ending) while it still waits for NATS at start is a clean
// exit.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) error {
	s, err := Start(ctx, cfg, log, opts...)
	if err != nil {
		// Only a wait that the stop cut short (its error wraps ctx's) is
		// a clean exit: a start refused for a real reason (creds missing
		// or denied, a bad bucket) as the stop came is still a failure.
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			log.Info("provisioner stopped before it started", "error", err)
			return nil
		}
		return err
	}
	return s.Serve(ctx)
}

// Serve serves until ctx ends, then stops the service; or until a NATS
// connection is closed for good, then it stops it and fails. Run and dev
// both end this way.
func (s *Service) Serve(ctx context.Context) error {
	log := s.log
	select {
	case <-ctx.Done():
		log.Info("provisioner stopping")
		return s.Stop()
	case c := <-s.lost:
		err := fmt.Errorf("NATS connection %s was closed for good (the server refused the creds %s: %v); nats.go does not reconnect it, so the provisioner stops, for a restart", c.name, c.creds, c.nc.LastError())
		log.Error("provisioner stopping: a NATS connection was closed for good", "connection", c.name, "creds", c.creds, "error", c.nc.LastError())
		if serr := s.Stop(); serr != nil {
			log.Warn("stop after the connection was lost", "error", serr)
		}
		return err
	}
}

// seedPublicKey returns the public key of the nkey seed in file, and
// whether it holds one.
func seedPublicKey(file string) (string, bool) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	kp, err := jwt.ParseDecoratedNKey(raw)
	if err != nil {
		return "", false
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	return pub, err == nil
}

// jwtReplyEnvelope is the room an account JWT's reply (account.create,
// update, rotate, user.revoke) needs beside the JWT: the account's name
// and key, and a line for each server's answer, as many as provision's
// replyServersRoom holds (with many servers, the rest are counted).
const jwtReplyEnvelope = 4096

// maxJWTSize is the largest account JWT the service signs: the servers
// take one of max_payload, but the reply that carries it back must fit in
// a reply body too. A JWT that fitted the push but not its reply was made
// and pushed, then answered 500 "carried out, but its reply would be over
// max_payload": a caller that retried made it again. The push goes on the
// other connection, which may be to another server of the cluster, with a
// smaller max_payload: a JWT over it was made, then its push failed
// ("maximum payload exceeded", answered 504, so a caller retried for
// ever), so the JWT must fit that connection's max_payload too.
func maxJWTSize(replyMaxPayload, pushMaxPayload int64) int {
	return min(int(replyMaxPayload)-responder.HeaderRoom-jwtReplyEnvelope, int(pushMaxPayload))
}

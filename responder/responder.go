// Package responder answers provisioning requests on NATS as a micro
// service: one endpoint per operation, each request decoded strictly, handed
// to the provisioning domain on a goroutine of its own, and answered with
// JSON or with an error whose code comes from one table.
//
// It speaks the micro protocol itself (micro.go), with nats.go micro's wire
// types, rather than through nats.go's micro package. micro times a
// request and counts its error only around the handler call, and calls an
// endpoint's handler for one request at a time: a handler that waited for
// the work (store writes, pushes to the servers, a wait for the next
// second's iat) would serialize the endpoint, and one that hands the work
// to a goroutine, as this package did, leaves `nats micro stats` showing
// microseconds and no errors. Several subscriptions per endpoint in one
// queue group would let micro time real work, but MaxInflight concurrent
// requests would take MaxInflight subscriptions per endpoint, each a row
// of its own in `nats micro info` and `stats`. Here each endpoint is one
// subscription in micro's queue group, each request is timed from the
// start of its work to its reply and its error counted, and up to
// MaxInflight requests run at once.
package responder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/jsonstrict"
	"github.com/natsprov/provisioner/provision"
)

// MaxRequestSize is the largest request body accepted.
const MaxRequestSize = 64 << 10

// HeaderRoom is what a reply leaves of max_payload for its headers (the
// micro service's, an error's description): a reply body is at most
// max_payload - HeaderRoom.
const HeaderRoom = 1024

// ErrConfig is returned by New and NewSelf for a name or version that the
// micro protocol does not allow.
var ErrConfig = errors.New("responder: invalid config")

// Provisioner is what the responder needs of the provisioning domain.
type Provisioner interface {
	CreateAccount(context.Context, api.CreateAccountRequest) (*api.AccountReply, error)
	GetAccount(context.Context, api.AccountRequest) (*api.AccountReply, error)
	ListAccounts(context.Context, api.ListRequest) (*api.ListAccountsReply, error)
	UpdateAccount(context.Context, api.UpdateAccountRequest) (*api.AccountReply, error)
	DeleteAccount(context.Context, api.AccountRequest) (*api.DeleteAccountReply, error)
	RotateAccount(context.Context, api.RotateAccountRequest) (*api.RotateAccountReply, error)
	CreateUser(context.Context, api.CreateUserRequest) (*api.CreateUserReply, error)
	ListUsers(context.Context, api.ListUsersRequest) (*api.ListUsersReply, error)
	RevokeUser(context.Context, api.RevokeUserRequest) (*api.RevokeUserReply, error)
	Reconcile(context.Context, api.ReconcileRequest) (*api.ReconcileReply, error)
	Status(context.Context, api.StatusRequest) (*api.StatusReply, error)
	Audit(context.Context, api.AuditRequest) (*api.AuditReply, error)
	RotateOperator(context.Context, api.RotateOperatorRequest) (*api.RotateOperatorReply, error)
}

var _ Provisioner = (*provision.Service)(nil)

// Config holds the responder's settings.
type Config struct {
	// Prefix is the first subject token of every endpoint. Default "prov".
	Prefix string
	// Name and Version identify the micro service. Defaults "provisioner"
	// and "0.1.0". Name takes letters, digits, - and _; Version is a
	// semantic version.
	Name    string
	Version string
	// Instance, when set, names this instance (letters, digits, - and _):
	// it is in the micro metadata ("instance"), and the status endpoint
	// is also answered by this instance alone on prefix.status.<instance>
	// (api.InstanceStatusSubject), since the queue group hands
	// prov.status to any instance.
	Instance string
	// RequestTimeout bounds the work of one request. Default 30s.
	RequestTimeout time.Duration
	// MaxInflight bounds the requests handled at once, over all endpoints;
	// past it, requests wait in the subscription. Default 512.
	MaxInflight int
	// StopWait bounds how long Stop waits for the requests in flight
	// before it cancels them. Default 10s.
	StopWait time.Duration
	// Cut, when set, is called once StopWait is up, after the requests are
	// cancelled: it ends the work they handed on that does not end with
	// them (provision.Service.Halt: a change's version runs under a
	// deadline of its own).
	Cut    func()
	Logger *slog.Logger
}

// Responder is a running provisioning service. Stop it with Stop.
type Responder struct {
	nc          *nats.Conn
	cfg         Config
	log         *slog.Logger
	id          string
	description string
	metadata    map[string]string
	started     time.Time
	eps         []*endpoint
	verbs       []*nats.Subscription
	sem         chan struct{}
	// mu orders dispatch against Stop: once closing is set, no request
	// joins wg, so Stop's Wait sees every request that started.
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
	// jobs hands a request to an idle worker (workers.go); quit ends the
	// idle ones once Stop has waited for the requests.
	jobs chan job
	quit chan struct{}
	// workersStarted and workersLive count the workers, for tests.
	workersStarted, workersLive atomic.Int64
	seq                         atomic.Uint64
	// shed counts requests not begun since logShed's last line
	// (shedLogged, in Unix nanoseconds); shedFlush is set while a line
	// for them is due.
	shed, shedLogged atomic.Int64
	shedFlush        atomic.Bool
	// clock, when set, stands for the wall clock the callers' deadlines
	// are compared with (a test steps it).
	clock    atomic.Pointer[func() time.Time]
	stopOnce sync.Once
	stopErr  error
	// base is every request's parent context; Stop cancels it, with
	// errStopped, once StopWait is up.
	base    context.Context
	abandon context.CancelCauseFunc
}

// errStopped is the cause of a request cut short by Stop.
var errStopped = errors.New("the provisioner stopped before the request was done")

// handlerFunc decodes a request and carries it out.
type handlerFunc func(ctx context.Context, m *nats.Msg) (any, error)

// endpoint is one operation: its micro endpoint name, its subject below
// the prefix, its handler and the types of its request and reply (for the
// schemas in its metadata); once subscribed, its subscription and counters.
type endpoint struct {
	name    string
	subject string
	handle  handlerFunc
	request any
	reply   any

	full     string // the subject with the prefix
	metadata map[string]string
	sub      *nats.Subscription
	// own is the status endpoint's subscription to this instance's own
	// subject (subscribeInstanceStatus), counted with sub.
	own   *nats.Subscription
	stats endpointStats
}

func endpoints(p Provisioner) []*endpoint {
	return []*endpoint{
		handle("account_create", api.SubjectAccountCreate, p.CreateAccount),
		handle("account_get", api.SubjectAccountGet, p.GetAccount),
		handle("account_list", api.SubjectAccountList, p.ListAccounts),
		handle("account_update", api.SubjectAccountUpdate, p.UpdateAccount),
		handle("account_delete", api.SubjectAccountDelete, p.DeleteAccount),
		handle("account_rotate", api.SubjectAccountRotate, p.RotateAccount),
		handle("user_create", api.SubjectUserCreate, p.CreateUser),
		handle("user_list", api.SubjectUserList, p.ListUsers),
		handle("user_revoke", api.SubjectUserRevoke, p.RevokeUser),
		handle("reconcile", api.SubjectReconcile, p.Reconcile),
		handle("status", api.SubjectStatus, p.Status),
		handle("audit", api.SubjectAudit, p.Audit),
		handle("operator_rotate", api.SubjectOperatorRotate, p.RotateOperator),
	}
}

// handle makes the endpoint of a typed operation: its handler decodes the
// request into a Req.
func handle[Req, Rep any](name, subject string, op func(context.Context, Req) (Rep, error)) *endpoint {
	return &endpoint{
		name:    name,
		subject: subject,
		request: new(Req),
		reply:   new(Rep),
		handle: func(ctx context.Context, m *nats.Msg) (any, error) {
			var req Req
			if err := decode(m.Data, &req); err != nil {
				return nil, err
			}
			return op(ctx, req)
		},
	}
}

// New starts the provisioning service on nc, a connection in the system
// account: its endpoints, and its answers to micro discovery. ctx bounds
// the wait for the server to have the subscriptions (a stop during a start
// cuts it).
func New(ctx context.Context, nc *nats.Conn, p Provisioner, cfg Config) (*Responder, error) {
	return start(ctx, nc, cfg, endpoints(p), "Provisions NATS accounts and users: signs JWTs and pushes them to the account resolver")
}

// The micro protocol's rules for a service name and version.
var (
	nameRegexp   = regexp.MustCompile(`^[A-Za-z0-9\-_]+$`)
	semverRegexp = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
)

// start subscribes the endpoints, in micro's queue group so that instances
// share the requests, and the discovery subjects.
func start(ctx context.Context, nc *nats.Conn, cfg Config, eps []*endpoint, description string) (*Responder, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = api.DefaultPrefix
	}
	if cfg.Name == "" {
		cfg.Name = "provisioner"
	}
	if cfg.Version == "" {
		cfg.Version = "0.1.0"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 512
	}
	if cfg.StopWait <= 0 {
		cfg.StopWait = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !nameRegexp.MatchString(cfg.Name) {
		return nil, fmt.Errorf("%w: name %q: use letters, digits, - and _", ErrConfig, cfg.Name)
	}
	if !semverRegexp.MatchString(cfg.Version) {
		return nil, fmt.Errorf("%w: version %q is not a semantic version (1.2.3)", ErrConfig, cfg.Version)
	}
	if cfg.Instance != "" && !nameRegexp.MatchString(cfg.Instance) {
		return nil, fmt.Errorf("%w: instance %q: use letters, digits, - and _", ErrConfig, cfg.Instance)
	}
	r := &Responder{
		nc:          nc,
		cfg:         cfg,
		log:         cfg.Logger,
		id:          nuid.Next(),
		description: description,
		metadata:    map[string]string{"subject_prefix": cfg.Prefix},
		sem:         make(chan struct{}, cfg.MaxInflight),
		jobs:        make(chan job),
		quit:        make(chan struct{}),
		eps:         eps,
	}
	if cfg.Instance != "" {
		r.metadata["instance"] = cfg.Instance
	}
	r.base, r.abandon = context.WithCancelCause(context.Background())
	for _, e := range eps {
		e.full = cfg.Prefix + "." + e.subject
		req, err := api.RequestSchema(e.request)
		if err != nil {
			return nil, fmt.Errorf("responder: request schema of %s: %w", e.full, err)
		}
		rep, err := api.ReplySchema(e.reply)
		if err != nil {
			return nil, fmt.Errorf("responder: reply schema of %s: %w", e.full, err)
		}
		e.metadata = map[string]string{"request_schema": string(req), "response_schema": string(rep)}
	}
	r.started = time.Now().UTC()
	for _, e := range eps {
		sub, err := nc.QueueSubscribe(e.full, micro.DefaultQueueGroup, r.receive(e))
		if err != nil {
			r.unsubscribe()
			return nil, fmt.Errorf("responder: subscribe %s: %w", e.full, err)
		}
		e.sub = sub
	}
	if err := r.subscribeVerbs(); err != nil {
		r.unsubscribe()
		return nil, err
	}
	if err := r.subscribeInstanceStatus(); err != nil {
		r.unsubscribe()
		return nil, err
	}
	// Requests sent right after New returns must find the subscriptions.
	// A server that went away meanwhile gets them again on reconnect: that
	// is no reason to fail. Bounded by ctx too: a SIGTERM while a paused
	// server holds the flush stops the start at once, as a stop (its
	// error wraps ctx's), instead of after the flush's own timeout, as a
	// failure.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second) // nc.Flush's own bound
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil && !nc.IsReconnecting() {
		r.unsubscribe()
		return nil, fmt.Errorf("responder: flush subscriptions: %w", err)
	}
	return r, nil
}

// subscribeInstanceStatus answers status on this instance's own subject
// too, outside the queue group: a reconcile reply that says its pass is
// still running names the instance whose prov.status will report it, and
// operator finish asks every instance which key it signs with. It counts
// in the status endpoint's stats, and is drained with the verbs.
func (r *Responder) subscribeInstanceStatus() error {
	if r.cfg.Instance == "" {
		return nil
	}
	for _, e := range r.eps {
		if e.subject != api.SubjectStatus {
			continue
		}
		subj := api.InstanceStatusSubject(r.cfg.Prefix, r.cfg.Instance)
		sub, err := r.nc.Subscribe(subj, r.receive(e))
		if err != nil {
			return fmt.Errorf("responder: subscribe %s: %w", subj, err)
		}
		r.verbs = append(r.verbs, sub)
		e.own = sub
	}
	return nil
}

// unsubscribe undoes a start that failed half way.
func (r *Responder) unsubscribe() {
	for _, e := range r.eps {
		if e.sub != nil {
			e.sub.Unsubscribe()
		}
	}
	for _, s := range r.verbs {
		s.Unsubscribe()
	}
}

// Stop stops taking requests and waits for the requests in flight to be
// answered. Requests that arrive while the subscriptions drain are
// answered 503, so that the caller can retry (another instance, or this
// one once it is back). Later calls return the first call's result.
func (r *Responder) Stop() error {
	r.stopOnce.Do(func() { r.stopErr = r.stop() })
	return r.stopErr
}

func (r *Responder) stop() error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	// A stop must fit the time a container is given before it is killed
	// (docker-compose.yml's stop_grace_period, 30s), and the service still
	// flushes its audit events and user records after this (up to 15 s
	// during an outage). Requests still running after StopWait are
	// cancelled: each ends as its deadline would have ended it (a change
	// in doubt is as a kill would leave it, which the store and the
	// reconciler are built for), but the flush that follows still runs.
	cut := time.AfterFunc(r.cfg.StopWait, func() {
		r.log.Warn("stopping: cancelling the requests still in flight", "waited", r.cfg.StopWait)
		r.abandon(errStopped)
		if r.cfg.Cut != nil {
			r.cfg.Cut()
		}
	})
	defer cut.Stop()
	defer r.abandon(nil)
	// Dropped fails once a subscription is closed: count the drops so far;
	// later ones leave requests pending, which receive counts them with.
	for _, e := range r.eps {
		e.stats.countDrops(e)
	}
	subs := slices.Clone(r.verbs)
	for _, e := range r.eps {
		subs = append(subs, e.sub)
	}
	var errs []error
	var draining []<-chan nats.SubStatus
	for _, s := range subs {
		// Asked before the drain, so that the closing is not missed.
		closed := s.StatusChanged(nats.SubscriptionClosed)
		if err := s.Drain(); err != nil {
			if !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				errs = append(errs, fmt.Errorf("responder: drain %s: %w", s.Subject, err))
			}
			continue
		}
		draining = append(draining, closed)
	}
	// A drained subscription is closed once its last callback returned,
	// so every request that reached this instance has been taken (and
	// the late ones answered 503). Without a server the drain waits for
	// one (a closed connection never reports it), and there is no one to
	// answer: then only the requests in flight are waited for.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(draining); {
		select {
		case <-draining[i]:
			i++
		case <-tick.C:
			if !r.nc.IsConnected() {
				i = len(draining)
			}
		}
	}
	r.wg.Wait()
	r.dropUndrained(subs)
	close(r.quit)
	return errors.Join(errs...)
}

// dropUndrained unsubscribes the subscriptions whose drain has not ended
// (the connection was down). nats.go sends a draining subscription's SUB
// again on reconnect but never its UNSUB, and forgets it locally once its
// pending messages are delivered: the server would go on routing the
// endpoint's requests (with other instances, a share of the queue group's)
// to this connection, which drops them, until the connection closes.
// Unsubscribe is ordered with the reconnect: before it, the subscription is
// not sent again; after it, the UNSUB is sent. The requests already pending
// are answered 503 first (no request waits for a slot any more).
func (r *Responder) dropUndrained(subs []*nats.Subscription) {
	deadline := time.Now().Add(time.Second)
	for _, s := range subs {
		for time.Now().Before(deadline) {
			if n, _, err := s.Pending(); err != nil || n == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Dropped fails once a subscription is closed: count the last drops.
	for _, e := range r.eps {
		e.stats.countDrops(e)
	}
	for _, s := range subs {
		if !s.IsValid() {
			continue // drained and closed
		}
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) && !errors.Is(err, nats.ErrConnectionDraining) {
			r.log.Warn("could not unsubscribe", "subject", s.Subject, "error", err)
		}
	}
}

// receive returns the message handler of an endpoint. It runs for one
// message at a time, so it hands each request to a goroutine and returns;
// the request's processing time runs from when it takes its slot to its
// reply.
func (r *Responder) receive(e *endpoint) nats.MsgHandler {
	return func(m *nats.Msg) {
		if reason := r.foreignReply(m.Reply); reason != "" {
			// Answered, the reply would be published with this service's
			// permissions (the system account's) on a subject a caller
			// chose: a forged event on the service's own subjects, a
			// message on the servers' own, an answer slipped into one of
			// this connection's pending requests. Nothing is done and
			// nothing is sent, not even the 503 of a stopping responder.
			start := time.Now()
			e.stats.begin()
			reply := shownReply(m.Reply)
			r.log.Warn("request dropped: its reply subject is "+reason, "subject", m.Subject, "reply", reply)
			e.stats.end(time.Since(start), strconv.Itoa(api.CodeInvalid)+":"+r.statError("reply subject "+reply+" is "+reason))
			return
		}
		deadline, err := callerDeadline(m)
		if err == nil {
			err = late(deadline, r.now())
		}
		if err != nil {
			// Answered here, without a slot: under overload the requests
			// whose callers have gone are shed as fast as they come.
			r.refuse(e, m, err)
			return
		}
		r.mu.Lock()
		if r.closing {
			r.mu.Unlock()
			// Drops while draining: counted before the subscription closes.
			e.stats.countDrops(e)
			start := time.Now()
			e.stats.begin()
			r.finish(e, m, start, api.CodeUnavailable, "the provisioner is shutting down; retry", nil)
			return
		}
		r.wg.Add(1)
		r.mu.Unlock()
		// At MaxInflight, this blocks the endpoint's delivery: requests
		// wait in the subscription until a slot frees, or this one's
		// caller's deadline passes.
		if err := r.acquire(deadline); err != nil {
			r.wg.Done()
			r.refuse(e, m, err)
			return
		}
		start := time.Now()
		e.stats.begin()
		r.dispatch(job{e: e, m: m, start: start, deadline: deadline})
	}
}

// refuse answers a request that is not begun with err's code.
func (r *Responder) refuse(e *endpoint, m *nats.Msg, err error) {
	start := time.Now()
	e.stats.begin()
	code, desc := r.classify(e, err)
	r.finish(e, m, start, code, desc, nil)
}

// serve carries out one request and answers it.
func (r *Responder) serve(e *endpoint, m *nats.Msg, start, deadline time.Time) {
	if context.Cause(r.base) == errStopped {
		// It waited for a slot (max_inflight) until Stop cut the requests
		// in flight: it never began, so it is not "may have taken
		// effect" but the 503 of a stopping responder.
		r.finish(e, m, start, api.CodeUnavailable, "the provisioner is shutting down; retry", nil)
		return
	}
	// Again once a worker has it: the hand-off may have crossed its
	// caller's deadline.
	if err := late(deadline, r.now()); err != nil {
		code, desc := r.classify(e, err)
		r.finish(e, m, start, code, desc, nil)
		return
	}
	var (
		data     []byte
		err      error
		panicked bool
	)
	max := r.nc.MaxPayload() - HeaderRoom
	ctx, cancel := context.WithTimeout(r.base, r.cfg.RequestTimeout)
	defer cancel()
	// The handler and the reply's encoding run under recover: a panic in
	// either answers 500 and frees the request's slot.
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
				panicked = true
			}
		}()
		if len(m.Data) > MaxRequestSize {
			err = fmt.Errorf("%w: the request is %d bytes; the limit is %d", provision.ErrInvalid, len(m.Data), MaxRequestSize)
			return
		}
		var rep any
		if rep, err = e.handle(ctx, m); err == nil {
			data, err = json.Marshal(rep)
		}
		if err == nil && int64(len(data)) > max {
			if short, ok := withoutClaims(rep, len(data), max+HeaderRoom); ok {
				data, err = json.Marshal(short)
			}
		}
	}()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		default:
			// A change goes on past the request's deadline on its
			// account's worker (under a deadline of its own), where it
			// is finished or undone: waited for, the caller, whose own
			// timeout came first, heard nothing. It is answered now,
			// as README promises for request_timeout: it may have taken
			// effect. The slot stays taken until the work ends, so that
			// max_inflight still bounds it, and in_flight ($SRV.STATS)
			// counts it until then: finish's count of the answer takes
			// one off.
			e.stats.begin()
			code, desc := r.classify(e, ctx.Err())
			r.finish(e, m, start, code, desc, nil)
			<-done
			e.stats.ended()
			if panicked {
				// A bug as much as a panic before the deadline (a 500,
				// logged at ERROR): in the INFO line below, a log_level
				// of warn or error never showed it.
				r.log.Error("request failed after it was answered at its deadline", "subject", e.full, "took", time.Since(start).Round(time.Millisecond), "error", err)
				return
			}
			r.log.Info("a request answered at its deadline has ended", "subject", e.full, "took", time.Since(start).Round(time.Millisecond), "error", err)
			return
		}
	}
	if err == nil && int64(len(data)) > max {
		// Publishing it would fail and leave the caller waiting.
		err = &tooLargeError{fmt.Sprintf("the request was carried out, but its reply would be %d bytes, over the servers' max_payload of %d bytes; for lists, ask for a smaller page with \"limit\"; otherwise raise max_payload", len(data), max+HeaderRoom)}
	}
	if err != nil {
		code, desc := r.classify(e, err)
		if code == api.CodeUnavailable && errors.Is(ctx.Err(), context.DeadlineExceeded) && errors.Is(err, context.DeadlineExceeded) {
			// The request's deadline cut a store write, which answered
			// unavailable, and the handler returned before the wait above
			// saw the deadline: answered 503 "nothing was changed, retry"
			// though the write may land (and the change it follows, a
			// revocation, had), where losing that race gave the
			// deadline's 504. It is the deadline's answer either way.
			r.log.Info("a request cut short by its deadline ended as it was answered", "subject", e.full, "took", time.Since(start).Round(time.Millisecond), "error", err)
			code, desc = r.classify(e, ctx.Err())
		}
		r.finish(e, m, start, code, desc, nil)
		return
	}
	r.finish(e, m, start, 0, "", data)
}

// foreignReply says why a reply subject is not one an answer may be sent
// to ("" when it may): the servers' own subjects ($SYS, $JS, ...), this
// service's, or this connection's own inboxes (when it has a prefix of its
// own, as init gives the service's users).
func (r *Responder) foreignReply(reply string) string {
	switch ib := strings.TrimSuffix(r.nc.Opts.InboxPrefix, "."); {
	case strings.HasPrefix(reply, "$"):
		return "a server subject"
	case strings.HasPrefix(reply, r.cfg.Prefix+"."):
		return "one of this service's subjects"
	case ib != "" && ib+"." != nats.InboxPrefix && strings.HasPrefix(reply, ib+"."):
		return "in this service's own inboxes"
	}
	return ""
}

// shownReply is a refused reply subject as the log and the stats quote it:
// it is the caller's own text, and one that holds a seed is not quoted
// (the stats are every admin's to read, the log is kept).
func shownReply(reply string) string {
	if api.LooksLikeSeed(reply) {
		return "[redacted: it looks like an nkey seed]"
	}
	return reply
}

// finish counts the request and sends the answer: its time from start to
// reply, and its error, as micro writes it ("code:description"). It counts
// first, so that a caller who has the answer and then asks for the stats
// finds the request in them; a reply that cannot be sent is counted as an
// error afterwards.
func (r *Responder) finish(e *endpoint, m *nats.Msg, start time.Time, code int, desc string, data []byte) {
	var last string
	if code != 0 {
		last = strconv.Itoa(code) + ":" + r.statError(desc)
	}
	e.stats.end(time.Since(start), last)
	if err := r.reply(m, code, desc, data); err != nil && last == "" {
		e.stats.unsent(r.statError("the reply could not be sent: " + err.Error()))
	}
}

// statError cuts an error kept as an endpoint's last error. $SRV.STATS
// carries the last error of every endpoint in one reply, JSON-escaped
// (where "<" is six bytes): a description that echoed a long value of a
// request (an account name of 12 KB), cut in its reply (fitDescription)
// but kept whole here, made a STATS answer over max_payload that could
// not be published, and `nats micro stats` got nothing from the instance
// until another error replaced it. Each endpoint gets an equal share of
// max_payload, with room for the rest of the STATS answer.
func (r *Responder) statError(desc string) string {
	limit := int((r.nc.MaxPayload() - HeaderRoom) / int64(7*(len(r.eps)+3)))
	return cutText(desc, limit, "... (cut)")
}

// reply publishes the answer: data, or for a code the micro error headers
// and an api.ErrorReply body.
func (r *Responder) reply(m *nats.Msg, code int, desc string, data []byte) error {
	if m.Reply == "" {
		return nil
	}
	out := &nats.Msg{Subject: m.Reply, Data: data}
	if code != 0 {
		desc = fitDescription(desc, r.nc.MaxPayload())
		out.Header = nats.Header{}
		out.Header.Set(micro.ErrorHeader, desc)
		out.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(code))
		out.Data, _ = json.Marshal(api.ErrorReply{Error: api.Error{Code: code, Description: desc}})
	}
	if err := r.nc.PublishMsg(out); err != nil {
		r.log.Warn("could not send reply", "subject", m.Subject, "error", err)
		return err
	}
	return nil
}

// fitDescription cuts an error's description so that its reply, which
// carries it twice (the Nats-Service-Error header and the body, where
// JSON may write a byte as six), stays under max_payload: a description
// that echoes a long value of the request (a name of 60 KB) made a reply
// the connection refused to publish, and the caller waited out its
// timeout for an answer that never came.
func fitDescription(desc string, maxPayload int64) string {
	return cutText(desc, int((maxPayload-HeaderRoom)/7), "... (cut: the description was too long for max_payload)")
}

// cutText returns s, or when it is longer than limit bytes, its start
// (whole characters) and cut, in about limit bytes.
func cutText(s string, limit int, cut string) string {
	if len(s) <= limit {
		return s
	}
	n := max(0, limit-len(cut))
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + cut
}

// withoutClaims returns account.get's reply rep without its claims, and
// whether it had any to leave out. The claims are the JWT decoded, near
// its size again, and the service signs JWTs up to nearly what a reply may
// carry (service's maxJWTSize): with them, a get of an account over about
// half of max_payload (many revocations, tags) failed though the account
// was made and updated fine. The JWT holds them all.
func withoutClaims(rep any, size int, maxPayload int64) (any, bool) {
	a, ok := rep.(*api.AccountReply)
	if !ok || a.Account.Claims == nil {
		return nil, false
	}
	short := *a
	short.Account.Claims = nil
	short.Account.ClaimsOmitted = fmt.Sprintf("the claims are left out: with them the reply would be %d bytes, over the servers' max_payload of %d bytes; they are all in the jwt, decode it", size, maxPayload)
	return &short, true
}

// tooLargeError is a reply over the servers' max_payload.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }

// classify is the one place where errors become wire codes. Callers get
// descriptions they can act on; internal details go to the log only.
func (r *Responder) classify(e *endpoint, err error) (int, string) {
	code := api.CodeInternal
	var lateErr *lateError
	switch {
	case errors.As(err, &lateErr):
		// First: never begun, so not "cut short by the stop" either.
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrInvalid):
		code = api.CodeInvalid
	case errors.Is(err, provision.ErrForbidden):
		code = api.CodeForbidden
	case errors.Is(err, provision.ErrNotFound):
		code = api.CodeNotFound
	case errors.Is(err, provision.ErrConflict), errors.Is(err, provision.ErrStale):
		code = api.CodeConflict
	case errors.Is(err, provision.ErrRefused):
		code = api.CodeRefused
	case errors.Is(err, provision.ErrFull):
		// Before ErrUnavailable: a store broken by a full disk is both.
		code = api.CodeStoreFull
	case errors.Is(context.Cause(r.base), errStopped) && (errors.Is(err, context.Canceled) || errors.Is(err, provision.ErrUnavailable) || errors.Is(err, provision.ErrTimeout) || errors.Is(err, provision.ErrInDoubt)):
		// Cut short by Stop (StopWait): like a deadline, the change may
		// have been made. Before ErrUnavailable: a store answers a
		// cancelled write unavailable (kvstore's transient), which said
		// "retry" of a write that may have landed. ErrInDoubt too: a
		// create cut in its push whose take-back the stop cut as well
		// is in doubt for the stop's sake.
		code = api.CodeTimeout
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Warn("request cut short by the stop", "subject", e.full, "code", code, "ref", ref, "error", err)
		// The store's error (paths, bucket and key names) goes to the log
		// only, as it does for the same error outside a stop (503).
		return code, fmt.Sprintf("%s (it waited %s), so it may have taken effect; read it back before trying again (ref %s: the provisioner's log has the details)", errStopped, r.cfg.StopWait, ref)
	case errors.Is(err, provision.ErrInDoubt):
		// Before ErrUnavailable, which it wraps: a write the store may
		// still hold is no "retry".
		code = api.CodeTimeout
	case errors.Is(err, provision.ErrOtherSealKey):
		// This instance cannot serve the account, and retrying here does
		// not help; as a bare error it was a 500 "internal error".
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrUnreadable):
		// Not the service's bug (a 500 sent callers and operators after
		// one) nor the request's fault: the account cannot be served
		// until an operator repairs its record, like ErrOtherSealKey.
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrClockBehind):
		// Nothing was changed, and it passes once the clocks agree (or
		// the account's last version is no longer ahead of them). As a
		// bare error it was a 500 whose "check the clocks" reached only
		// the log.
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrUnavailable):
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrTimeout), errors.Is(err, provision.ErrNotSent):
		code = api.CodeTimeout
	case errors.Is(err, context.DeadlineExceeded):
		// The request's own deadline (request_timeout) ran out while it
		// waited on the store or the servers: not a bug, and the change
		// may have been made.
		code = api.CodeTimeout
		err = fmt.Errorf("the request ran out of its time (request_timeout %s) before it was done, so it may have taken effect; read it back before trying again: %w", r.cfg.RequestTimeout, err)
	}
	desc := oneLine(err.Error())
	var tooLarge *tooLargeError
	switch {
	case lateErr != nil:
		// Its description is the caller's to act on, and shed requests
		// come in floods: a few log lines, with a count.
		r.logShed(e.full, desc)
	case errors.As(err, &tooLarge):
		// A 500, but no bug to look up in the log: the caller can act
		// on it, and it holds no internal detail.
		r.log.Error("request failed", "subject", e.full, "error", desc)
	case code == api.CodeInternal:
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed", "subject", e.full, "ref", ref, "error", err)
		desc = fmt.Sprintf("internal error (ref %s); the provisioner's log has the details", ref)
	case code == api.CodeStoreFull && errors.Is(err, provision.ErrFileSizeLimit):
		// Not a full disk: "make room" sent operators freeing a disk
		// that had room.
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed: a file of the store reached the process's file size limit", "subject", e.full, "ref", ref, "error", err)
		desc = fmt.Sprintf("a file of the provisioner's store reached the process's file size limit, nothing was changed; an operator must raise the limit or lift it (ulimit -f, systemd's LimitFSIZE) (ref %s: the provisioner's log says the limit and the file)", ref)
		if errors.Is(err, provision.ErrBroken) {
			desc = fmt.Sprintf("a file of the provisioner's store reached the process's file size limit, and the store refuses every change until this instance is restarted; an operator must raise the limit or lift it (ulimit -f, systemd's LimitFSIZE), then restart it (ref %s: the provisioner's log says the limit and the file)", ref)
		}
	case code == api.CodeStoreFull:
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed: the store is full", "subject", e.full, "ref", ref, "error", err)
		desc = fmt.Sprintf("the provisioner's store is full, nothing was changed; an operator must make room (ref %s: the provisioner's log says where)", ref)
		if errors.Is(err, provision.ErrBroken) {
			// Room alone does not repair a store that broke on it.
			desc = fmt.Sprintf("the provisioner's store is full and refuses every change until this instance is restarted; an operator must make room, then restart it (ref %s: the provisioner's log says where)", ref)
		}
	case errors.Is(err, provision.ErrInDoubt):
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Warn("request failed", "subject", e.full, "code", code, "ref", ref, "error", err)
		desc = fmt.Sprintf("the provisioner's store did not answer the write, or could not take back a change whose push failed, so it could not tell whether the change stands: it may have taken effect; read it back before trying again (ref %s: the provisioner's log has the details)", ref)
	case errors.Is(err, provision.ErrOtherSealKey):
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed: the account is sealed with a seal key this instance does not hold", "subject", e.full, "code", code, "ref", ref, "error", err)
		desc = fmt.Sprintf("%s: an instance running with another seal_key created or changed it, or its key was dropped from seal_key_previous before every record was resealed; an operator must list that key in seal_key_previous and give every instance the same seal_key, restart them, and run store reseal, trying again here does not help (ref %s: the provisioner's log and prov.status name the keys)", provision.ErrOtherSealKey, ref)
	case errors.Is(err, provision.ErrUnreadable):
		// The store's error goes to the log only: it names the bucket,
		// and a decoder's message may quote a byte of the record.
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed: a record in the store cannot be read", "subject", e.full, "code", code, "ref", ref, "error", err)
		desc = fmt.Sprintf("%s (damaged in the store, or written by a newer provisioner): an operator must put it back whole from a backup of the bucket or remove it, or upgrade this provisioner; trying again does not help (ref %s: the provisioner's log says what is wrong with it, prov.status's damage names it)", provision.ErrUnreadable, ref)
	case errors.Is(err, provision.ErrClockBehind):
		// Its description names no internal detail, and the fix is the
		// operator's: it goes to the caller as it is.
		r.log.Warn("request failed", "subject", e.full, "code", code, "error", desc)
	case code == api.CodeUnavailable && errors.Is(err, provision.ErrBroken):
		// "Retry" never helps here: only a restart repairs the store
		// (prov.status's problem says why).
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed: the store refuses every change until a restart", "subject", e.full, "code", code, "ref", ref, "error", err)
		// Not "nothing was changed": the write that broke it may be read
		// back at the restart (a journal it could not close).
		desc = fmt.Sprintf("the provisioner's store refuses every change until this instance is restarted; an operator must restart it, trying again does not help (ref %s: the provisioner's log and prov.status say why)", ref)
	case code == api.CodeUnavailable:
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Warn("request failed", "subject", e.full, "code", code, "ref", ref, "error", err)
		// Not only an unreachable store: an account other instances
		// changed under this one too often, the service account's
		// JetStream limits changed under its streams. "The store is
		// unavailable" sent operators looking at the wrong thing.
		desc = fmt.Sprintf("the provisioner cannot carry the request out now (its store cannot be reached, or other instances kept changing the account meanwhile); retry (ref %s: the provisioner's log has the details)", ref)
	case code >= 500:
		r.log.Warn("request failed", "subject", e.full, "code", code, "error", desc)
	default:
		r.log.Debug("request refused", "subject", e.full, "code", code, "error", desc)
	}
	return code, desc
}

// oneLine makes a description fit a header: the resolver joins several
// errors with newlines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// decode reads a JSON object into v with the one strict decoder: exact
// field names (with a suggestion for a near miss), types named by the path
// the caller wrote, no trailing data. An empty body is an empty object.
func decode(body []byte, v any) error {
	// Public keys never look like seeds, so a seed anywhere in the body,
	// in any string field, is a secret sent by mistake: refuse it before
	// it is decoded, signed into a JWT, stored or echoed.
	if api.BodyHoldsSeed(body) {
		return fmt.Errorf("%w: a value in the request looks like an nkey seed; seeds are secrets: never send them, and replace this one", provision.ErrInvalid)
	}
	// JSON is UTF-8 (RFC 8259), and the decoder reads bytes that are not
	// as U+FFFD: a name would be taken as one the caller never sent, and
	// two different ones as the same.
	if !utf8.Valid(body) {
		i := 0
		for {
			r, n := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		return fmt.Errorf("%w: the request is not valid UTF-8: byte %#02x at offset %d", provision.ErrInvalid, body[i], i)
	}
	err := jsonstrict.Decode(body, v)
	if errors.Is(err, jsonstrict.ErrEmpty) {
		err = jsonstrict.Decode([]byte("{}"), v)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", provision.ErrInvalid, err)
	}
	return nil
}

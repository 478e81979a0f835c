// Package responder answers provisioning requests on NATS. It registers a
// nats.go micro service with one endpoint per operation, decodes each
// request strictly, hands it to the provisioning domain on a goroutine of
// its own (a micro endpoint runs one handler at a time), and replies with
// JSON, or with an error whose code it picks from one table.
package responder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/jsonstrict"
	"github.com/natsprov/provisioner/provision"
)

// MaxRequestSize is the largest request body accepted.
const MaxRequestSize = 64 << 10

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
}

var _ Provisioner = (*provision.Service)(nil)

// Config holds the responder's settings.
type Config struct {
	// Prefix is the first subject token of every endpoint. Default "prov".
	Prefix string
	// Name and Version identify the micro service. Defaults "provisioner"
	// and "0.1.0".
	Name    string
	Version string
	// RequestTimeout bounds the work of one request. Default 30s.
	RequestTimeout time.Duration
	// MaxInflight bounds the requests handled at once; past it, requests
	// wait in the subscription. Default 512.
	MaxInflight int
	Logger      *slog.Logger
}

// Responder is a running provisioning service. Stop it with Stop.
type Responder struct {
	nc  *nats.Conn
	cfg Config
	log *slog.Logger
	svc micro.Service
	sem chan struct{}
	// mu orders dispatch against Stop: once closing is set, no request
	// joins wg, so Stop's Wait sees every request that started.
	mu      sync.Mutex
	closing bool
	wg      sync.WaitGroup
	seq     atomic.Uint64
	stat    map[string]*endpointStats
	eps     []endpoint
}

// handlerFunc decodes a request and carries it out.
type handlerFunc func(ctx context.Context, req micro.Request) (any, error)

// endpoint names one operation: the micro endpoint name and its subject
// below the prefix.
type endpoint struct {
	name    string
	subject string
	handle  handlerFunc
}

func endpoints(p Provisioner) []endpoint {
	return []endpoint{
		{"account_create", api.SubjectAccountCreate, handle(p.CreateAccount)},
		{"account_get", api.SubjectAccountGet, handle(p.GetAccount)},
		{"account_list", api.SubjectAccountList, handle(p.ListAccounts)},
		{"account_update", api.SubjectAccountUpdate, handle(p.UpdateAccount)},
		{"account_delete", api.SubjectAccountDelete, handle(p.DeleteAccount)},
		{"account_rotate", api.SubjectAccountRotate, handle(p.RotateAccount)},
		{"user_create", api.SubjectUserCreate, handle(p.CreateUser)},
		{"user_list", api.SubjectUserList, handle(p.ListUsers)},
		{"user_revoke", api.SubjectUserRevoke, handle(p.RevokeUser)},
		{"reconcile", api.SubjectReconcile, handle(p.Reconcile)},
		{"status", api.SubjectStatus, handle(p.Status)},
		{"audit", api.SubjectAudit, handle(p.Audit)},
	}
}

// handle adapts a typed operation to a handlerFunc that decodes its request.
func handle[Req, Rep any](op func(context.Context, Req) (Rep, error)) handlerFunc {
	return func(ctx context.Context, m micro.Request) (any, error) {
		var req Req
		if err := decode(m.Data(), &req); err != nil {
			return nil, err
		}
		return op(ctx, req)
	}
}

// New registers the micro service and its endpoints on nc.
func New(nc *nats.Conn, p Provisioner, cfg Config) (*Responder, error) {
	return start(nc, cfg, endpoints(p), "Provisions NATS accounts and users: signs JWTs and pushes them to the account resolver")
}

// start registers a micro service with the given endpoints.
func start(nc *nats.Conn, cfg Config, eps []endpoint, description string) (*Responder, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "prov"
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Responder{nc: nc, cfg: cfg, log: cfg.Logger, sem: make(chan struct{}, cfg.MaxInflight), stat: map[string]*endpointStats{}, eps: eps}
	// Filled before the service exists: its stats handler and the
	// endpoints read the map from other goroutines.
	for _, e := range eps {
		r.stat[e.name] = &endpointStats{}
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name:        cfg.Name,
		Version:     cfg.Version,
		Description: description,
		Metadata:    map[string]string{"subject_prefix": cfg.Prefix},
		// Replies are sent after the micro handler returns, so micro's own
		// counters see only the hand-off; these are the real ones.
		StatsHandler: func(e *micro.Endpoint) any {
			if s := r.stat[e.Name]; s != nil {
				return s.snapshot()
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("responder: add micro service: %w", err)
	}
	r.svc = svc
	group := svc.AddGroup(cfg.Prefix)
	for _, e := range eps {
		err := group.AddEndpoint(e.name, r.dispatch(e), micro.WithEndpointSubject(e.subject))
		if err != nil {
			svc.Stop()
			return nil, fmt.Errorf("responder: add endpoint %s: %w", e.subject, err)
		}
	}
	// Requests sent right after New returns must find the subscriptions.
	if err := nc.Flush(); err != nil {
		svc.Stop()
		return nil, fmt.Errorf("responder: flush subscriptions: %w", err)
	}
	return r, nil
}

// Stop stops taking requests and waits for the requests in flight to be
// answered. Requests that arrive while the endpoint subscriptions drain are
// answered 503, so that the caller can retry (another instance, or this
// one once it is back).
func (r *Responder) Stop() error {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	err := r.svc.Stop()
	r.wg.Wait()
	return err
}

// dispatch returns the micro handler of an endpoint: it hands the request to
// a goroutine and returns, so the endpoint can take the next request.
func (r *Responder) dispatch(e endpoint) micro.HandlerFunc {
	return func(req micro.Request) {
		r.mu.Lock()
		if r.closing {
			r.mu.Unlock()
			r.reply(req, api.CodeUnavailable, "the provisioner is shutting down; retry", nil)
			return
		}
		r.wg.Add(1)
		r.mu.Unlock()
		r.sem <- struct{}{}
		go func() {
			defer func() {
				<-r.sem
				r.wg.Done()
			}()
			r.serve(e, req)
		}()
	}
}

func (r *Responder) serve(e endpoint, req micro.Request) {
	start := time.Now()
	st := r.stat[e.name]
	var (
		rep any
		err error
	)
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.RequestTimeout)
		defer cancel()
		body := req.Data()
		if len(body) > MaxRequestSize {
			err = fmt.Errorf("%w: the request is %d bytes; the limit is %d", provision.ErrInvalid, len(body), MaxRequestSize)
			return
		}
		rep, err = e.handle(ctx, req)
	}()
	if err != nil {
		code, desc := r.classify(e, err)
		st.record(time.Since(start), desc)
		r.reply(req, code, desc, nil)
		return
	}
	data, merr := json.Marshal(rep)
	if merr != nil {
		code, desc := r.classify(e, merr)
		st.record(time.Since(start), desc)
		r.reply(req, code, desc, nil)
		return
	}
	if max := r.nc.MaxPayload() - 1024; int64(len(data)) > max {
		// Publishing it would fail and leave the caller waiting.
		err := fmt.Errorf("the reply would be %d bytes, over the servers' max_payload of %d bytes; for lists, ask for a page with \"limit\"", len(data), max+1024)
		code, desc := r.classify(e, err)
		st.record(time.Since(start), desc)
		r.reply(req, code, desc, nil)
		return
	}
	st.record(time.Since(start), "")
	r.reply(req, 0, "", data)
}

// reply publishes the answer. It does not use micro.Request's Respond or
// Error: those record state that micro reads when the handler returns,
// which here is before the reply.
func (r *Responder) reply(req micro.Request, code int, desc string, data []byte) {
	subj := req.Reply()
	if subj == "" {
		return
	}
	m := &nats.Msg{Subject: subj, Data: data}
	if code != 0 {
		m.Header = nats.Header{}
		m.Header.Set(micro.ErrorHeader, desc)
		m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(code))
		m.Data, _ = json.Marshal(api.ErrorReply{Error: api.Error{Code: code, Description: desc}})
	}
	if err := r.nc.PublishMsg(m); err != nil {
		r.log.Warn("could not send reply", "subject", req.Subject(), "error", err)
	}
}

// classify is the one place where errors become wire codes. Callers get
// descriptions they can act on; internal details go to the log only.
func (r *Responder) classify(e endpoint, err error) (int, string) {
	code := api.CodeInternal
	switch {
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
	case errors.Is(err, provision.ErrUnavailable):
		code = api.CodeUnavailable
	case errors.Is(err, provision.ErrTimeout), errors.Is(err, provision.ErrNotSent):
		code = api.CodeTimeout
	}
	desc := oneLine(err.Error())
	switch {
	case code == api.CodeInternal:
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Error("request failed", "subject", e.subject, "ref", ref, "error", err)
		desc = fmt.Sprintf("internal error (ref %s); the provisioner's log has the details", ref)
	case code == api.CodeUnavailable:
		ref := strconv.FormatUint(r.seq.Add(1), 10)
		r.log.Warn("request failed", "subject", e.subject, "code", code, "ref", ref, "error", err)
		desc = fmt.Sprintf("the provisioner's store is unavailable; retry (ref %s: the provisioner's log has the details)", ref)
	case code >= 500:
		r.log.Warn("request failed", "subject", e.subject, "code", code, "error", desc)
	default:
		r.log.Debug("request refused", "subject", e.subject, "code", code, "error", desc)
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
	if provision.LooksLikeSeed(string(body)) || (bytes.IndexByte(body, '\\') >= 0 && escapedSeed(body)) {
		return fmt.Errorf("%w: a value in the request looks like an nkey seed; seeds are secrets: never send them, and replace this one", provision.ErrInvalid)
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

// escapedSeed reports whether a JSON body holds a seed written with escapes
// (\u0053...), which the scan of the raw bytes does not see.
func escapedSeed(body []byte) bool {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false // the decoder says what is wrong
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch v := v.(type) {
		case string:
			return provision.LooksLikeSeed(v)
		case []any:
			return slices.ContainsFunc(v, walk)
		case map[string]any:
			for k, e := range v {
				if provision.LooksLikeSeed(k) || walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

// endpointStats counts what an endpoint did, measured around the real work.
type endpointStats struct {
	mu        sync.Mutex
	requests  uint64
	errors    uint64
	total     time.Duration
	lastError string
}

func (s *endpointStats) record(d time.Duration, errDesc string) {
	s.mu.Lock()
	s.requests++
	s.total += d
	if errDesc != "" {
		s.errors++
		s.lastError = errDesc
	}
	s.mu.Unlock()
}

// EndpointStats is what `nats micro stats` shows in an endpoint's data.
type EndpointStats struct {
	Requests              uint64 `json:"requests"`
	Errors                uint64 `json:"errors"`
	AverageProcessingTime string `json:"average_processing_time"`
	LastError             string `json:"last_error,omitempty"`
}

func (s *endpointStats) snapshot() EndpointStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := EndpointStats{Requests: s.requests, Errors: s.errors, LastError: s.lastError}
	if s.requests > 0 {
		out.AverageProcessingTime = (s.total / time.Duration(s.requests)).String()
	}
	return out
}

package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/natsprov/provisioner/api"
)

// health serves the HTTP health endpoint (health_listen). It listens from
// the first moment of Start, so that a port taken by something else
// refuses the start at once, and a healthcheck sees "starting" while the
// service waits for NATS, instead of a refused connection.
type health struct {
	srv      *http.Server
	instance string
	// state is nil before the service serves, then the Service.
	state    atomic.Pointer[Service]
	stopping atomic.Bool
	done     chan struct{}
	// hold, when set (tests only, export_test.go), is called by each
	// request's handler before it answers.
	hold atomic.Pointer[func()]
}

// listenHealth starts the health endpoint on addr.
func listenHealth(addr, instance string, log *slog.Logger) (*health, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health_listen %s: %w", addr, err)
	}
	h := &health{instance: instance, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.HealthPath, h.serve)
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "error", err)
		}
	}()
	log.Info("health endpoint listening", "addr", ln.Addr().String(), "path", api.HealthPath)
	return h, nil
}

func (h *health) serve(w http.ResponseWriter, _ *http.Request) {
	if hold := h.hold.Load(); hold != nil {
		(*hold)()
	}
	out := api.HealthReply{Status: api.HealthOK, Instance: h.instance}
	switch s := h.state.Load(); {
	case h.stopping.Load():
		out.Status = api.HealthStopping
	case s == nil:
		out.Status = api.HealthStarting
	default:
		out.Problems = s.problems()
		if len(out.Problems) > 0 {
			out.Status = api.HealthUnavailable
		}
		out.Warnings = s.warnings()
	}
	code := http.StatusOK
	if out.Status != api.HealthOK {
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(out)
}

// healthCloseWait bounds how long close waits for the requests under way:
// it comes at the end of a stop, which must fit in a container's grace
// period, and a client that connected but sends nothing must not hold it.
const healthCloseWait = time.Second

// close stops the endpoint; requests being answered get their answer
// (within healthCloseWait): Close alone cut their connections, and a
// healthcheck polling at the stop saw a reset, not "stopping". (A request
// whose header is still arriving is dropped by net/http either way.)
func (h *health) close() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthCloseWait)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	<-h.done
}

// warnings lists what an operator should see to while the instance
// serves: entries in the store that cannot be read (damaged in the
// bucket, or written by a newer provisioner): account records, user
// records, name entries. Not a problem: the entry is in the bucket every
// instance reads, so each would answer 503 at once and a load balancer
// take them all out, though they serve every other account; nor does a
// restart help: it refuses a bucket holding such an account record.
func (s *Service) warnings() []string {
	if s.Provision == nil || s.Provision.Damage() == nil {
		return nil
	}
	// Not the store's words, which name the records and the bucket:
	// prov.status and the log do.
	return []string{"store: entries in it cannot be read (damaged, or written by a newer provisioner): reads of the accounts of such account records fail on every instance, and an instance that starts refuses the store until they are repaired; instances started since lack the users and names of the other entries; prov.status (damage) and the log name them"}
}

// problems lists why the service cannot serve now: a NATS connection down
// (requests, pushes, or the store's), servers that do not trust its
// operator signing key, accounts sealed with a seal key it does not hold,
// a store that refuses every change until a restart, or another process
// that took over the instance name. A connection down is reported while nats.go reconnects
// (it retries forever): the instance answers nothing meanwhile, so a
// readiness probe should take it out, not a liveness probe kill it.
func (s *Service) problems() []string {
	var out []string
	for _, c := range s.conns {
		if !c.nc.IsConnected() {
			out = append(out, fmt.Sprintf("NATS connection %s is %s", c.name, c.nc.Status()))
		}
	}
	if s.Provision != nil {
		if err := s.Provision.SignerProblem(); err != nil {
			// Not its own words, which name the operator signing key:
			// the endpoint answers anyone who reaches it and says
			// nothing of keys. prov.status and the log name it.
			out = append(out, "operator signing key: servers do not trust the key this instance signs with; prov.status and the log say which")
		}
		if err := s.Provision.SealProblem(); err != nil {
			// Nor the seal keys' public keys: prov.status and the log
			// name them.
			out = append(out, "seal key: the store holds accounts sealed with a seal key this instance does not hold (another instance runs with it as its seal_key, or it was dropped from seal_key_previous before every record was resealed); prov.status and the log say which and what to do")
		}
	}
	if s.instanceProblem() != nil {
		out = append(out, fmt.Sprintf("instance name: another process took over instance %q on the bucket while this one did not renew it; two processes answer as it; stop one", s.claimName))
	}
	if s.Store != nil {
		if err := s.Store.Broken(); err != nil {
			// Not the store's own words (a journal's path, a bucket's
			// name): the endpoint answers anyone who reaches it.
			// prov.status and the log say what broke.
			out = append(out, "store: it refuses every change until a restart; prov.status and the log say why")
		}
	}
	return out
}

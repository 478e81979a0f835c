package responder

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The micro protocol, answered with nats.go micro's own wire types and
// type strings, so that `nats micro ls|info|stats|ping` and any micro
// client see an ordinary micro service: PING, INFO and STATS on
// $SRV.<VERB>, $SRV.<VERB>.<name> and $SRV.<VERB>.<name>.<id>, endpoints
// in micro's queue group "q" (instances share requests), errors in the
// Nats-Service-Error(-Code) headers.

// EndpointData is an endpoint's data in $SRV.STATS: what micro's own
// counters do not show.
type EndpointData struct {
	// InFlight is how many of the endpoint's requests are being carried
	// out, each holding one of the MaxInflight slots.
	InFlight int `json:"in_flight"`
	// Pending is how many have arrived and wait for a slot.
	Pending int `json:"pending"`
}

// subscribeVerbs subscribes PING, INFO and STATS on the three subjects
// micro answers each on: every service, the service's name, the instance.
func (r *Responder) subscribeVerbs() error {
	answers := map[micro.Verb]func() any{
		micro.PingVerb:  func() any { return micro.Ping{ServiceIdentity: r.identity(), Type: micro.PingResponseType} },
		micro.InfoVerb:  func() any { return r.fittingInfo() },
		micro.StatsVerb: func() any { return r.Stats() },
	}
	for _, verb := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		answer := answers[verb]
		for _, scope := range [][2]string{{"", ""}, {r.cfg.Name, ""}, {r.cfg.Name, r.id}} {
			subj, err := micro.ControlSubject(verb, scope[0], scope[1])
			if err != nil {
				return fmt.Errorf("responder: %s subject: %w", verb, err)
			}
			sub, err := r.nc.Subscribe(subj, func(m *nats.Msg) {
				if m.Reply == "" {
					return
				}
				if reason := r.foreignReply(m.Reply); reason != "" {
					// As for the endpoints (receive): an admin may publish
					// $SRV.>, and the answer would go out with this
					// service's permissions where the caller chose, such
					// as on its own events subjects.
					r.log.Warn("micro discovery request dropped: its reply subject is "+reason, "subject", m.Subject, "reply", shownReply(m.Reply))
					return
				}
				data, err := json.Marshal(answer())
				if err == nil {
					err = m.Respond(data)
				}
				if err != nil {
					r.log.Warn("could not answer micro discovery", "subject", m.Subject, "error", err)
				}
			})
			if err != nil {
				return fmt.Errorf("responder: subscribe %s: %w", subj, err)
			}
			r.verbs = append(r.verbs, sub)
		}
	}
	return nil
}

func (r *Responder) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: r.cfg.Name, ID: r.id, Version: r.cfg.Version, Metadata: maps.Clone(r.metadata)}
}

// Info describes the service as $SRV.INFO does: its identity and
// description, and each endpoint with its subject, its queue group and, in
// its metadata, the JSON Schemas of its request ("request_schema") and
// reply ("response_schema").
func (r *Responder) Info() micro.Info {
	info := micro.Info{
		ServiceIdentity: r.identity(),
		Type:            micro.InfoResponseType,
		Description:     r.description,
		Endpoints:       make([]micro.EndpointInfo, 0, len(r.eps)),
	}
	for _, e := range r.eps {
		info.Endpoints = append(info.Endpoints, micro.EndpointInfo{
			Name:       e.name,
			Subject:    e.full,
			QueueGroup: micro.DefaultQueueGroup,
			Metadata:   maps.Clone(e.metadata),
		})
	}
	return info
}

// Stats returns the service's counters as $SRV.STATS does. Each request
// counts once it is answered, with its processing time, from when it took
// one of the MaxInflight slots to its reply (the wait for a slot shows as
// pending in the endpoint's data, not as processing), and, when it failed,
// its error as micro writes it ("404:account nope not found"). A request
// the client library dropped because the endpoint fell too far behind
// counts as an error too.
func (r *Responder) Stats() micro.Stats {
	st := micro.Stats{
		ServiceIdentity: r.identity(),
		Type:            micro.StatsResponseType,
		Started:         r.started,
		Endpoints:       make([]*micro.EndpointStats, 0, len(r.eps)),
	}
	for _, e := range r.eps {
		st.Endpoints = append(st.Endpoints, e.stats.snapshot(e))
	}
	return st
}

// fittingInfo is Info, without the endpoints' schemas when with them it
// would be over the servers' max_payload: the thirteen endpoints' schemas
// are about 32 KB, and on servers with a smaller max_payload the answer
// could not be published, so `nats micro info` got nothing. The service's
// metadata says why they are left out ("schemas_omitted").
func (r *Responder) fittingInfo() micro.Info {
	info := r.Info()
	data, err := json.Marshal(info)
	if err != nil || int64(len(data)) <= r.nc.MaxPayload() {
		return info
	}
	for i := range info.Endpoints {
		delete(info.Endpoints[i].Metadata, "request_schema")
		delete(info.Endpoints[i].Metadata, "response_schema")
	}
	info.Metadata["schemas_omitted"] = fmt.Sprintf("the endpoints' request and response schemas are left out: with them this answer would be %d bytes, over the servers' max_payload of %d bytes", len(data), r.nc.MaxPayload())
	return info
}

// endpointStats counts what an endpoint did.
type endpointStats struct {
	mu        sync.Mutex
	requests  int
	errors    int
	total     time.Duration
	lastError string
	inFlight  int
	// dropped is how many drops of each of the endpoint's subscriptions
	// are counted.
	dropped map[*nats.Subscription]int
}

// begin counts a request whose work starts.
func (s *endpointStats) begin() {
	s.mu.Lock()
	s.inFlight++
	s.mu.Unlock()
}

// ended takes off in-flight work that was answered before it ended (at
// its deadline), once it ends.
func (s *endpointStats) ended() {
	s.mu.Lock()
	s.inFlight--
	s.mu.Unlock()
}

// end counts a request answered after d, failed when lastError is set.
func (s *endpointStats) end(d time.Duration, lastError string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	s.requests++
	s.total += d
	if lastError != "" {
		s.errors++
		s.lastError = lastError
	}
}

// unsent counts as an error a request already counted as answered whose
// reply could not be published.
func (s *endpointStats) unsent(lastError string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors++
	s.lastError = lastError
}

func (s *endpointStats) snapshot(e *endpoint) *micro.EndpointStats {
	s.countDrops(e)
	// It fails once the subscription is gone: nothing is pending.
	pending := 0
	for _, sub := range e.subs() {
		if n, _, err := sub.Pending(); err == nil {
			pending += n
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &micro.EndpointStats{
		Name:           e.name,
		Subject:        e.full,
		QueueGroup:     micro.DefaultQueueGroup,
		NumRequests:    s.requests,
		NumErrors:      s.errors,
		LastError:      s.lastError,
		ProcessingTime: s.total,
	}
	if s.requests > 0 {
		out.AverageProcessingTime = s.total / time.Duration(s.requests)
	}
	out.Data, _ = json.Marshal(EndpointData{InFlight: s.inFlight, Pending: pending})
	return out
}

// countDrops counts the drops of the subscription not counted yet. Dropped
// fails once the subscription is closed, so Stop counts them before the
// drain, and receive while it drains (a drop leaves requests pending).
// The status endpoint's own subscription (prov.status.<instance>) drops
// requests as its queue subscription does: they were dropped unanswered
// and counted nowhere.
func (s *endpointStats) countDrops(e *endpoint) {
	for _, sub := range e.subs() {
		dropped, err := sub.Dropped()
		if err != nil {
			continue
		}
		s.mu.Lock()
		if s.dropped == nil {
			s.dropped = map[*nats.Subscription]int{}
		}
		if dropped > s.dropped[sub] {
			n := dropped - s.dropped[sub]
			s.dropped[sub] = dropped
			s.requests += n
			s.errors += n
			s.lastError = fmt.Sprintf("slow consumer: %d requests dropped unanswered while the endpoint was at its limit of requests in flight", n)
		}
		s.mu.Unlock()
	}
}

// subs returns the subscriptions that take the endpoint's requests.
func (e *endpoint) subs() []*nats.Subscription {
	if e.own == nil {
		return []*nats.Subscription{e.sub}
	}
	return []*nats.Subscription{e.sub, e.own}
}

package responder

import (
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
)

// requestSubs returns every subscription that takes requests: each
// endpoint's, and the instance's own status subject's.
func (r *Responder) requestSubs() []*nats.Subscription {
	var subs []*nats.Subscription
	for _, e := range r.eps {
		subs = append(subs, e.sub)
	}
	for _, s := range r.verbs {
		if r.cfg.Instance != "" && s.Subject == api.InstanceStatusSubject(r.cfg.Prefix, r.cfg.Instance) {
			subs = append(subs, s)
		}
	}
	return subs
}

// SetPendingLimits sets the pending limits of every subscription that
// takes requests (nats.Subscription.SetPendingLimits), so that a test can
// make an endpoint fall behind and drop requests.
func (r *Responder) SetPendingLimits(msgs, bytes int) error {
	for _, s := range r.requestSubs() {
		if err := s.SetPendingLimits(msgs, bytes); err != nil {
			return err
		}
	}
	return nil
}

// Dropped returns how many requests the client library dropped, summed
// over every subscription that takes requests, read from the
// subscriptions without counting them in the stats, as Stats would: a
// test can wait for the drops and still see whether Stop counts them.
func (r *Responder) Dropped() (int, error) {
	n := 0
	for _, s := range r.requestSubs() {
		d, err := s.Dropped()
		if err != nil {
			return 0, err
		}
		n += d
	}
	return n, nil
}

// Workers returns how many workers were started and how many are running.
func (r *Responder) Workers() (started, live int64) {
	return r.workersStarted.Load(), r.workersLive.Load()
}

// SetClock makes f the wall clock callers' deadlines are compared with,
// so that a test can step it.
func (r *Responder) SetClock(f func() time.Time) { r.clock.Store(&f) }

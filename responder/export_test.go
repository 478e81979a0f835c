package responder

import "time"

// SetPendingLimits sets the pending limits of every endpoint subscription
// (nats.Subscription.SetPendingLimits), so that a test can make an
// endpoint fall behind and drop requests.
func (r *Responder) SetPendingLimits(msgs, bytes int) error {
	for _, e := range r.eps {
		if err := e.sub.SetPendingLimits(msgs, bytes); err != nil {
			return err
		}
	}
	return nil
}

// Dropped returns how many requests the client library dropped, summed
// over every endpoint subscription, read from the subscriptions without
// counting them in the stats, as Stats would: a test can wait for the
// drops and still see whether Stop counts them.
func (r *Responder) Dropped() (int, error) {
	n := 0
	for _, e := range r.eps {
		d, err := e.sub.Dropped()
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

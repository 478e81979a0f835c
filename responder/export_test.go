package responder

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

// Workers returns how many workers were started and how many are running.
func (r *Responder) Workers() (started, live int64) {
	return r.workersStarted.Load(), r.workersLive.Load()
}

package responder

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/provision"
)

// A request waits before its turn: in the server and the socket while the
// process is paused or slow to read, in its subscription while every
// max_inflight slot is taken. Its caller may have given up meanwhile and
// retried; carried out anyway, a user.create made a second user nobody
// holds the key of. A caller that gives its deadline (api.DeadlineHeader)
// has a request that comes after it answered 503, with nothing done.

// shedLogEvery spaces the log lines of requests not begun: under overload
// they come by the thousand.
const shedLogEvery = 10 * time.Second

// lateError is a request not begun because its caller's deadline had
// passed. It is a 503: nothing was done, and a caller still waiting may
// retry.
type lateError struct {
	deadline time.Time
	late     time.Duration
}

func (e *lateError) Error() string {
	return fmt.Sprintf("not begun: the request's turn came %s after the caller's deadline (%s %s), as the provisioner was busy or paused, so nothing was done; a caller still waiting has a clock behind the provisioner's",
		e.late.Round(time.Millisecond), api.DeadlineHeader, e.deadline.UTC().Format(time.RFC3339Nano))
}

func (e *lateError) Unwrap() error { return provision.ErrUnavailable }

// callerDeadline returns the deadline m's caller gave (zero without one),
// or an error naming the header when it cannot be read: a 400, since a
// caller that meant to give one must learn it did not.
func callerDeadline(m *nats.Msg) (time.Time, error) {
	vals := m.Header.Values(api.DeadlineHeader)
	switch len(vals) {
	case 0:
		return time.Time{}, nil
	case 1:
	default:
		return time.Time{}, fmt.Errorf("%w: the %s header is given %d times; give it once", provision.ErrInvalid, api.DeadlineHeader, len(vals))
	}
	d, err := time.Parse(time.RFC3339Nano, vals[0])
	if err != nil {
		// Not echoed: a header is free text the other checks never saw.
		return time.Time{}, fmt.Errorf("%w: the %s header is not an RFC 3339 time such as %s", provision.ErrInvalid, api.DeadlineHeader, time.Date(2026, 11, 30, 7, 0, 5, 250e6, time.UTC).Format(time.RFC3339Nano))
	}
	return d, nil
}

// late returns a *lateError when deadline is set and had passed at now.
func late(deadline, now time.Time) error {
	if deadline.IsZero() || !now.After(deadline) {
		return nil
	}
	return &lateError{deadline: deadline, late: now.Sub(deadline)}
}

// acquire takes a request's slot, or gives up on it once its caller's
// deadline passes: the endpoint's delivery waits here, so the requests
// behind it, late ones among them, are answered only once it goes on.
func (r *Responder) acquire(deadline time.Time) error {
	if deadline.IsZero() {
		r.sem <- struct{}{}
		return nil
	}
	select {
	case r.sem <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(deadline.Sub(r.now()))
	defer t.Stop()
	for {
		select {
		case r.sem <- struct{}{}:
			return nil
		case <-t.C:
			if err := late(deadline, r.now()); err != nil {
				return err
			}
			// The timer runs on the monotonic clock, the deadline is
			// the wall clock's: stepped back meanwhile, the deadline is
			// ahead again. Returning nil would go on without the slot
			// (and give back another's), so it waits on.
			t.Reset(deadline.Sub(r.now()))
		}
	}
}

// now is the wall clock callers' deadlines are compared with.
func (r *Responder) now() time.Time {
	if f := r.clock.Load(); f != nil {
		return (*f)()
	}
	return time.Now()
}

// logShed logs a request not begun: the first at once, then one line per
// shedLogEvery at most, with how many there were since the last line.
func (r *Responder) logShed(subject, desc string) {
	r.shed.Add(1)
	now := time.Now().UnixNano()
	last := r.shedLogged.Load()
	if last != 0 && now-last < int64(shedLogEvery) || !r.shedLogged.CompareAndSwap(last, now) {
		// Counted for a line once shedLogEvery is up: left to the next
		// request not begun, the rest of a burst went unlogged until
		// then, maybe days later, or for good.
		if r.shedFlush.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(r.shedLogged.Load()+int64(shedLogEvery)-now), func() {
				r.shedFlush.Store(false)
				r.shedLogged.Store(time.Now().UnixNano())
				if n := r.shed.Swap(0); n > 0 {
					r.log.Warn(shedMsg, "count", n, "subject", subject, "error", desc)
				}
			})
		}
		return
	}
	r.log.Warn(shedMsg, "count", r.shed.Swap(0), "subject", subject, "error", desc)
}

const shedMsg = "requests not begun: their callers' deadlines had passed (overload, or this instance was paused)"

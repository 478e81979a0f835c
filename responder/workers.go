package responder

import (
	"time"

	"github.com/nats-io/nats.go"
)

// A request runs on a worker goroutine that stays for the next one while
// requests keep coming. A goroutine per request starts with a small stack
// and grows it on every request (signing and JSON go deep): in a
// user.create profile the stack copies were about 6 µs a request, 3% of
// the whole. A worker keeps its grown stack; one idle for workerIdle ends.

// workerIdle is how long an idle worker waits for the next request.
const workerIdle = 2 * time.Second

// job is a request that holds its slot (sem) and its place in wg.
type job struct {
	e     *endpoint
	m     *nats.Msg
	start time.Time
	// deadline is the caller's (api.DeadlineHeader), zero without one.
	deadline time.Time
}

// dispatch hands j to an idle worker, or starts one.
func (r *Responder) dispatch(j job) {
	select {
	case r.jobs <- j:
	default:
		r.workersStarted.Add(1)
		r.workersLive.Add(1)
		go r.work(j)
	}
}

// work serves j, then the requests handed to it, until it has been idle
// for workerIdle or the responder has stopped.
func (r *Responder) work(j job) {
	defer r.workersLive.Add(-1)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		r.serve(j.e, j.m, j.start, j.deadline)
		<-r.sem
		r.wg.Done()
		idle.Reset(workerIdle)
		select {
		case j = <-r.jobs:
		case <-idle.C:
			return
		case <-r.quit:
			return
		}
	}
}

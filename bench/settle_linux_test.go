package bench

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// burn uses cpu of its own thread's CPU time.
func burn(cpu time.Duration) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	used := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := used()
	for used()-start < cpu {
	}
}

// Work a row leaves running after its last reply (the service writes user
// records and audit events after it answers: about 40 ms of CPU after 400
// user.creates on the KV store, half the row's own) is done before the
// next row starts, and counts in the row that left it, not in the next
// one (in a run, the next row is often a floor, or the JetStream write
// floor, whose cost the README quotes).
func TestWorkLeftByARowCountsInIt(t *testing.T) {
	e := &Env{}
	const tail = 60 * time.Millisecond
	done := make(chan struct{})
	left := e.measure(context.Background(), 4, 2, func(i int) error {
		if i == 3 {
			go func() { defer close(done); burn(tail) }()
		}
		return nil
	})
	// The next row lasts longer than the work left.
	next := e.measure(context.Background(), 4, 1, func(int) error { time.Sleep(30 * time.Millisecond); return nil })
	<-done
	if left.cpu < tail*3/4 || next.cpu > tail/4 {
		t.Fatalf("a row that left %s of work running measured %s of CPU, the row after it %s; want the work in the first", tail, left.cpu, next.cpu)
	}
}

// Work running before a row (what the setup left: the 1,000 revocations'
// records and audit events before the first round, the floors' deletes
// between rounds) is done before the row starts, and is not counted in it:
// the first row of a run is the account.create floor.
func TestWorkBeforeARowIsNotCountedInIt(t *testing.T) {
	e := &Env{}
	const setup = 60 * time.Millisecond
	done := make(chan struct{})
	go func() { defer close(done); burn(setup) }()
	row := e.measure(context.Background(), 4, 1, func(int) error { time.Sleep(30 * time.Millisecond); return nil })
	<-done
	if row.cpu > setup/4 {
		t.Fatalf("a row started while %s of other work ran measured %s of CPU", setup, row.cpu)
	}
}

package bench

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// The scale mode measures account.get, update, user.create and list at the
// sizes it reports: "at 1,000" is 1,000 accounts, not 1,000 plus every
// account its own account.create measurement made first (3 × max(200, N/2):
// 3,000 more with the default N, so that both sizes were measured about
// 3,000 accounts higher than printed, and the growth read smaller), and the
// large size printed is the one measured.
func TestScaleMeasuresAtTheSizesItReports(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 1,000 accounts")
	}
	ctx := context.Background()
	o := Options{Dir: t.TempDir(), Store: StoreFile, N: 40, C: 4, Accounts: scaleSmall + 100}
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	// Each time the account.get measurement starts (a get after another
	// operation), the live accounts the store holds.
	liveCount := func() int {
		all, err := e.Service.Store.Accounts(ctx)
		if err != nil {
			t.Error(err)
		}
		n := 0
		for _, a := range all {
			if a.Live() {
				n++
			}
		}
		return n
	}
	var mu sync.Mutex
	var sizes []int
	prev := ""
	sub, err := e.Sys.Subscribe(e.Prefix+".account.*", func(m *nats.Msg) {
		op := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if op == "get" && prev != "get" {
			n := liveCount()
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
		}
		prev = op
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.Sys.Flush(); err != nil {
		t.Fatal(err)
	}
	rep := &Report{}
	if err := scale(ctx, e, o, rep); err != nil {
		t.Fatal(err)
	}
	e.Sys.Flush()
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) != 2 {
		t.Fatalf("account.get measured %d times (at %v), want at two sizes", len(sizes), sizes)
	}
	if sizes[0] != rep.SmallSize || sizes[1] != rep.LargeSize || rep.SmallSize != scaleSmall {
		t.Fatalf("account.get measured at %d and %d live accounts; the report says at %d and %d (reconcile at %d); want %d first", sizes[0], sizes[1], rep.SmallSize, rep.LargeSize, rep.Reconcile.Live, scaleSmall)
	}
}

// An interrupted run (Ctrl-C ends the context) stops: the scale mode's
// fills and measurements took no notice of it, and went on creating
// accounts by the thousand before the next check.
func TestScaleStopsWhenInterrupted(t *testing.T) {
	o := Options{Dir: t.TempDir(), Store: StoreFile, N: 40, C: 4, Accounts: 100000}
	e, err := Start(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(500*time.Millisecond, cancel)
	done := make(chan error, 1)
	go func() { done <- scale(ctx, e, o, &Report{}) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("scale interrupted: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		all, _ := e.Service.Store.Accounts(context.Background())
		t.Fatalf("scale still running 4.5 s after the interrupt (%d accounts in the store)", len(all))
	}
}

// The scale mode's reconcile pass finds the servers in line with the
// store after the rows: the JetStream write floor's account, which the
// bench made and deletes, was still on the servers then (deleted only when
// Run returned, after the scale mode), an orphan to the pass, and the run
// failed "in line" (and --strict) on the bench's own account.
func TestScaleReconcileFindsNoBenchAccountLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 1,000 accounts")
	}
	ctx := context.Background()
	o := Options{Dir: t.TempDir(), Store: StoreJetStream, N: 8, C: 4, CHigh: 4, Rounds: 1, Revocations: 1, Versions: 1,
		Only: regexp.MustCompile(`^JetStream write floor`), Accounts: scaleSmall + 1}
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	rep, err := Run(ctx, e, o)
	if err != nil {
		t.Fatal(err)
	}
	if rc := rep.Reconcile; rc == nil || rc.InLine == nil || !*rc.InLine {
		t.Fatalf("reconcile pass after the rows: %+v; want in line, no orphans", rc)
	}
}

package responder_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestLateRequestsAreNotBegun: a create that waited behind max_inflight
// until after its caller gave up is not carried out when its turn comes
// (the caller, or its retry, would get an account or user nobody asked
// for twice); one whose deadline had passed on arrival is answered at once,
// without waiting for a slot; an unreadable deadline is a 400.
func TestLateRequestsAreNotBegun(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	r := extra(t, env, slow, responder.Config{Prefix: "prov.dl", Name: "dl", MaxInflight: 1})
	first := send(admin, "prov.dl.account.create", `{"name":"first"}`)
	slow.waitHeld(t, 1)

	cl := client.New(admin, client.WithPrefix("prov.dl"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The responder gives up on it at the deadline, so its 503 may reach
	// the caller before the caller's own timer fires.
	var ce *client.Error
	if _, err := cl.CreateAccount(ctx, api.CreateAccountRequest{Name: "second"}); !errors.Is(err, context.DeadlineExceeded) && (!errors.As(err, &ce) || ce.Code != 503 || !strings.Contains(ce.Description, "not begun")) {
		t.Fatalf("a create behind the held one: %v, want the caller's deadline or a 503 saying it was not begun", err)
	}

	// Already late when it arrives: answered while the slot is still held.
	m := nats.NewMsg("prov.dl.account.create")
	m.Data = []byte(`{"name":"third"}`)
	m.Header.Set(api.DeadlineHeader, time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano))
	rep, err := admin.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code, desc := rep.Header.Get(micro.ErrorCodeHeader), rep.Header.Get(micro.ErrorHeader); code != "503" || !strings.Contains(desc, "after the caller's deadline") || !strings.Contains(desc, "nothing was done") {
		t.Errorf("a create late on arrival: %s %q, want 503 saying nothing was done", code, desc)
	}
	m.Data = []byte(`{"name":"fourth"}`)
	m.Header.Set(api.DeadlineHeader, "soon")
	if rep, err = admin.RequestMsg(m, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, desc := rep.Header.Get(micro.ErrorCodeHeader), rep.Header.Get(micro.ErrorHeader); code != "400" || !strings.Contains(desc, api.DeadlineHeader+" header is not an RFC 3339 time") || strings.Contains(desc, "soon") {
		t.Errorf("an unreadable deadline: %s %q, want 400 naming the header, not echoing it", code, desc)
	}

	close(slow.gate)
	if r := <-first; r.err != nil || r.code != 0 {
		t.Fatalf("the held create: %v %d", r.err, r.code)
	}
	// The second has had its turn once account_create counts it.
	deadline := time.Now().Add(5 * time.Second)
	for endpointOf(t, r.Stats(), "account_create").NumRequests < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("account_create = %+v, want 4 requests", endpointOf(t, r.Stats(), "account_create"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, name := range []string{"second", "third", "fourth"} {
		if _, err := cl.GetAccount(context.Background(), api.AccountRequest{Account: name}); !errors.Is(err, client.ErrNotFound) {
			t.Errorf("account %s after its caller's deadline: %v, want not found", name, err)
		}
	}
	if c := endpointOf(t, r.Stats(), "account_create"); c.NumErrors != 3 {
		t.Errorf("account_create = %+v, want the three refusals counted as errors", c)
	}
	// A deadline still ahead changes nothing.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.CreateAccount(ctx, api.CreateAccountRequest{Name: "fifth"}); err != nil {
		t.Errorf("a create in time: %v", err)
	}
}

// TestDeadlineAfterAClockStepWaitsForItsSlot: the wall clock is stepped
// back while a request waits for its slot behind max_inflight. Its timer
// fires at the deadline as it was, but by the stepped clock the deadline
// is still ahead: acquire returned "not late" without a slot, so the
// request ran beside the held one (two past max_inflight 1), and the slot
// it never took was given back, leaving a worker waiting forever for a
// token and Stop for it. It now waits on for its slot.
func TestDeadlineAfterAClockStepWaitsForItsSlot(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) }) // after extra's Stop
	go func() {
		select {
		case <-stuck:
		case <-time.After(30 * time.Second):
			_, most := slow.counts()
			panic(fmt.Sprintf("Stop still waits: a request gave back a slot it never took (%d creates ran at once with max_inflight 1)", most))
		}
	}()
	r := extra(t, env, slow, responder.Config{Prefix: "prov.step", Name: "step", MaxInflight: 1})
	first := send(admin, "prov.step.account.create", `{"name":"first"}`)
	slow.waitHeld(t, 1)

	m := nats.NewMsg("prov.step.account.create")
	m.Data = []byte(`{"name":"second"}`)
	m.Header.Set(api.DeadlineHeader, time.Now().Add(300*time.Millisecond).UTC().Format(time.RFC3339Nano))
	second := make(chan *nats.Msg, 1)
	go func() {
		rep, err := admin.RequestMsg(m, 20*time.Second)
		if err != nil {
			t.Error(err)
		}
		second <- rep
	}()
	// The clock steps back an hour once the request waits for its slot.
	time.Sleep(100 * time.Millisecond)
	r.SetClock(func() time.Time { return time.Now().Add(-time.Hour) })
	time.Sleep(time.Second)
	if _, most := slow.counts(); most != 1 {
		close(slow.gate)
		t.Fatalf("%d creates ran at once with max_inflight 1: the one behind the held create began without its slot after the clock stepped back", most)
	}
	close(slow.gate)
	if rep := <-first; rep.err != nil || rep.code != 0 {
		t.Fatalf("the held create: %v %d", rep.err, rep.code)
	}
	if rep := <-second; rep == nil || rep.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Fatalf("the create behind it, in time by the service's clock: %+v", rep)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
}

// shedLog collects the counts of the "requests not begun" log lines.
type shedLog struct {
	mu     sync.Mutex
	counts []int64
}

func (h *shedLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *shedLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *shedLog) WithGroup(string) slog.Handler            { return h }
func (h *shedLog) Handle(_ context.Context, rec slog.Record) error {
	if !strings.HasPrefix(rec.Message, "requests not begun") {
		return nil
	}
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "count" {
			h.mu.Lock()
			h.counts = append(h.counts, a.Value.Int64())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func (h *shedLog) total() (n int64, lines int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.counts {
		n += c
	}
	return n, len(h.counts)
}

// TestShedBurstIsLoggedWhole: a burst of late requests (a paused instance
// going on) logged its first at once and counted the others for the next
// line, which came only with the next late request, maybe days later, or
// never: the log said one request was not begun where there were five.
// The rest of a burst is logged once the 10 s are up.
func TestShedBurstIsLoggedWhole(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	h := &shedLog{}
	extra(t, env, svc.Provision, responder.Config{Prefix: "prov.shed", Name: "shed", Logger: slog.New(h)})
	for i := range 5 {
		m := nats.NewMsg("prov.shed.account.create")
		m.Data = []byte(fmt.Sprintf(`{"name":"late%d"}`, i))
		m.Header.Set(api.DeadlineHeader, time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano))
		rep, err := admin.RequestMsg(m, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if code := rep.Header.Get(micro.ErrorCodeHeader); code != "503" {
			t.Fatalf("late request %d: code %q, want 503", i, code)
		}
	}
	if n, lines := h.total(); lines != 1 || n != 1 {
		t.Fatalf("%d lines counting %d right after the burst, want the first alone", lines, n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for n, lines := h.total(); n < 5; n, lines = h.total() {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines counting %d requests not begun, 15 s after a burst of 5", lines, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, lines := h.total(); lines != 2 || n != 5 {
		t.Errorf("%d lines counting %d, want 2 lines counting 5", lines, n)
	}
}

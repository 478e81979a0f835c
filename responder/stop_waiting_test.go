package responder_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestStopAnswersWaitingRequests503: at max_inflight, a request waits for
// a slot. When Stop cuts the requests in flight (StopWait), the one that
// waited gets its slot with its context already cancelled: it never began,
// so its caller must hear 503 "retry", not 504 "it may have taken effect;
// read it back", and nothing of it may be carried out.
func TestStopAnswersWaitingRequests503(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	defer close(slow.gate)
	const wait = 300 * time.Millisecond
	r := extra(t, env, slow, responder.Config{Prefix: "prov.cut", Name: "cut", RequestTimeout: time.Minute, StopWait: wait, MaxInflight: 1})
	first := send(admin, "prov.cut.account.create", `{"name":"first"}`)
	slow.waitHeld(t, 1)
	second := send(admin, "prov.cut.account.create", `{"name":"second"}`)
	// The second waits for the slot in the endpoint's callback.
	time.Sleep(200 * time.Millisecond)
	if now, most := slow.counts(); now != 1 || most != 1 {
		t.Fatalf("%d creates held (at most %d), want 1 with max_inflight 1", now, most)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if got := <-first; got.err != nil || got.code != api.CodeTimeout {
		t.Errorf("the cut request: %d %v, want 504", got.code, got.err)
	}
	if got := <-second; got.err != nil || got.code != api.CodeUnavailable {
		t.Errorf("the request that waited for a slot and never began: %d %v, want 503 (retry)", got.code, got.err)
	}
	if _, err := svc.Store.AccountByName(context.Background(), "second"); !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("the second account: %v, want not found", err)
	}
}

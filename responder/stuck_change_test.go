package responder_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestRequestTimeoutAnswersAStuckChange: an account.update whose store
// write hangs (a store outage) runs on its account's worker under a
// deadline of its own (2 min), which the request's does not end: the
// request waited for it, past request_timeout, and its caller, whose own
// timeout came first, heard nothing, where README promises a 504 once
// request_timeout is up. It is answered 504 at request_timeout (the
// change may still be made); its slot stays taken until the change ends.
func TestRequestTimeoutAnswersAStuckChange(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	admin, _, store := stuckUpdate(t, "prov.stuck", timeout)
	start := time.Now()
	m, err := admin.Request("prov.stuck.account.update", []byte(`{"account":"acme","tags":["x"]}`), 10*time.Second)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("an update held in its store write, request_timeout %s: no answer after %s: %v", timeout, took.Round(time.Millisecond), err)
	}
	code, desc := m.Header.Get("Nats-Service-Error-Code"), m.Header.Get("Nats-Service-Error")
	if code != "504" || !strings.Contains(desc, "request_timeout") || took > 5*time.Second {
		t.Errorf("an update held in its store write: %q %q after %s, want 504 naming request_timeout soon after %s", code, desc, took.Round(time.Millisecond), timeout)
	}
	// It went on after the answer.
	heldInItsWrite(t, store)
}

// TestStuckChangeAnsweredAtItsDeadlineStaysInFlight: a change answered
// 504 at request_timeout goes on, holding its max_inflight slot; the
// endpoint's in_flight ($SRV.STATS), which counts the requests being
// carried out, each holding a slot, dropped to 0 with the answer, and an
// operator whose requests waited for slots (pending) saw none at work.
// It counts the change until it ends.
func TestStuckChangeAnsweredAtItsDeadlineStaysInFlight(t *testing.T) {
	t.Parallel()
	admin, r, store := stuckUpdate(t, "prov.stuckfl", 300*time.Millisecond)
	m, err := admin.Request("prov.stuckfl.account.update", []byte(`{"account":"acme","tags":["x"]}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := m.Header.Get("Nats-Service-Error-Code"); code != "504" {
		t.Fatalf("an update held in its store write: code %q, want 504", code)
	}
	heldInItsWrite(t, store)
	u := endpointOf(t, r.Stats(), "account_update")
	if d := data(t, u); d.InFlight != 1 || u.NumRequests != 1 || u.NumErrors != 1 {
		t.Errorf("an update answered 504 and still in its store write: %d in flight, %d requests, %d errors; want 1, 1, 1", d.InFlight, u.NumRequests, u.NumErrors)
	}
	// Stop cuts it (StopWait, then Cut): it is no longer in flight, and
	// counted once.
	r.Stop()
	u = endpointOf(t, r.Stats(), "account_update")
	if d := data(t, u); d.InFlight != 0 || u.NumRequests != 1 || u.NumErrors != 1 {
		t.Errorf("after the stop: %d in flight, %d requests, %d errors; want 0, 1, 1", d.InFlight, u.NumRequests, u.NumErrors)
	}
}

// stuckUpdate starts a deployment and a responder on prefix with a
// request_timeout of timeout whose domain's account writes hang
// (blockedStore), and returns the admin's connection, the responder and
// the store; account "acme" exists.
func stuckUpdate(t *testing.T, prefix string, timeout time.Duration) (*nats.Conn, *responder.Responder, *blockedStore) {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if _, err := svc.Provision.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	store := &blockedStore{Store: svc.Store, wrap: func(err error) error { return err }}
	p := domain(t, svc, provision.Config{Store: store})
	r := extra(t, env, p, responder.Config{Prefix: prefix, Name: strings.ReplaceAll(prefix, ".", "-"), RequestTimeout: timeout, StopWait: 100 * time.Millisecond, Cut: p.Halt})
	return admin, r, store
}

// heldInItsWrite waits until the update reached its store write (its
// version waits for the second after the create's first).
func heldInItsWrite(t *testing.T, store *blockedStore) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); store.held.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the update never reached its store write")
		}
	}
}

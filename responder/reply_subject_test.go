package responder_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestReplyToServiceSubjectsIsDropped: a caller chooses the reply subject
// of its request, and the answer is published with the service's own
// permissions. An admin could have the service publish its answer on the
// service's own subjects (an "event" no one made, on prov.events.>) or on
// the servers' ($SYS...). Such a request is dropped, unanswered and not
// carried out; a request with an inbox reply still works.
func TestReplyToServiceSubjectsIsDropped(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	sys := h.env.Connect(t, h.env.Init.ProvisionerCreds)
	watch, err := sys.SubscribeSync("prov.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, reply := range []string{"prov.events.account.created", "$SYS.REQ.SERVER.PING"} {
		if err := h.admin.PublishRequest("prov.account.create", reply, []byte(`{"name":"forged"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := watch.NextMsg(time.Second); err == nil {
		t.Errorf("the service published on %s, the reply subject a caller chose: %s", m.Subject, m.Data)
	}
	if r := h.req(t, "account.get", `{"account":"forged"}`); r.Code == 0 {
		t.Errorf("a request whose reply subject was refused was carried out: account.get = %v", r.Body)
	}
	h.ok(t, "account.create", `{"name":"real"}`)
}

// TestMicroDiscoveryReplyToServiceSubjectsIsDropped: the micro discovery
// verbs ($SRV.PING, INFO, STATS) are answered on the caller's reply subject
// as well, with the same permissions. An admin may publish $SRV.>, so a
// reply subject on prov.events.> had the service publish its PING answer
// there, as an event. Such a request is not answered; one with an inbox
// reply still is.
func TestMicroDiscoveryReplyToServiceSubjectsIsDropped(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	sys := h.env.Connect(t, h.env.Init.ProvisionerCreds)
	watch, err := sys.SubscribeSync("prov.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS", "$SRV.PING.provisioner"} {
		if err := h.admin.PublishRequest(subj, "prov.events.account.created", nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := watch.NextMsg(time.Second); err == nil {
		t.Errorf("the service published on %s, the reply subject a caller chose: %s", m.Subject, m.Data)
	}
	if _, err := h.admin.Request("$SRV.PING.provisioner", nil, 5*time.Second); err != nil {
		t.Errorf("$SRV.PING with an inbox reply: %v", err)
	}
}

// TestReplyToServiceSubjectsIsDroppedWhileStopping: a request that arrives
// while the responder stops is answered 503 at once, on its reply subject:
// that answer too went to a reply subject on the service's own subjects,
// past the check the requests it carries out get.
func TestReplyToServiceSubjectsIsDroppedWhileStopping(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	defer close(slow.gate)
	r := extra(t, env, slow, responder.Config{Prefix: "prov.late", Name: "late", MaxInflight: 1, StopWait: 300 * time.Millisecond})
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	watch, err := sys.SubscribeSync("prov.late.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Flush(); err != nil {
		t.Fatal(err)
	}
	// One create held in the only slot, one waiting for it in the
	// endpoint's callback, and the forged one queued behind them: it is
	// delivered once the stop has begun.
	for i := range 2 {
		if err := admin.PublishRequest("prov.late.account.create", admin.NewRespInbox(), []byte(fmt.Sprintf(`{"name":"held%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	slow.waitHeld(t, 1)
	if err := admin.PublishRequest("prov.late.account.create", "prov.late.events.account.created", []byte(`{"name":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // delivered to the responder's connection
	if err := r.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if m, err := watch.NextMsg(time.Second); err == nil {
		t.Errorf("the stopping service published on %s, the reply subject a caller chose: %q %s", m.Subject, m.Header.Get("Nats-Service-Error"), m.Data)
	}
}

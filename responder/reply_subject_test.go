package responder_test

import (
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
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

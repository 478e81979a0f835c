package responder_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestSelfCreateBlankKeyGetsNoSeed: a tenant's "public_key" or "xkey" of
// white space only is no key: the service would make the key itself and
// send the seed in the clear to an inbox in the tenant's account. It is
// refused like a request with neither.
func TestSelfCreateBlankKeyGetsNoSeed(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", tenantAccount)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := h.env.Connect(t, enroller)
	for i, body := range []map[string]string{
		{"name": "d1", "role": "device", "public_key": " "},
		{"name": "d2", "role": "device", "xkey": "\t"},
		{"name": "d3", "role": "device", "public_key": " ", "xkey": " "},
	} {
		data, _ := json.Marshal(body)
		rep, err := tenant.Request("prov.self.user.create", data, 10*time.Second)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if provision.LooksLikeSeed(string(rep.Data)) {
			t.Errorf("%s: the tenant got a seed in the clear: %s", data, rep.Data)
		}
		if c := rep.Header.Get("Nats-Service-Error-Code"); c != "400" {
			t.Errorf("%s: code %q (%s), want 400", data, c, rep.Data)
		}
	}
}

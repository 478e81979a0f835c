package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
)

// TestSelfCreateTooLargeAdvisesTheTenant: a self-service user whose reply
// would be over max_payload (a long name of four-byte characters, its
// seed and creds sealed to an xkey, which carry the JWT again) is refused
// (400). The refusal told the tenant to "give it fewer permissions or
// tags, or raise max_payload": a tenant's request has neither, and
// max_payload is the operator's. It now names what the tenant can change.
func TestSelfCreateTooLargeAdvisesTheTenant(t *testing.T) {
	t.Parallel()
	h := newHarnessMaxPayload(t, 8192)
	h.ok(t, "account.create", tenantAccount)
	tenant := h.enrollerTenant(t)
	xk, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	xpub, _ := xk.PublicKey()
	data, _ := json.Marshal(map[string]string{"name": strings.Repeat("\U0001D538", 128), "role": "device", "xkey": xpub})
	rep, err := tenant.Request("prov.self.user.create", data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, desc := rep.Header.Get("Nats-Service-Error-Code"), rep.Header.Get("Nats-Service-Error")
	if code == "" {
		t.Fatalf("precondition: the large self-service user was issued (%d bytes of reply): max_payload must be lower", len(rep.Data))
	}
	if code != "400" || strings.Contains(desc, "permissions or tags") || !strings.Contains(desc, "shorter name") {
		t.Errorf("a tenant's create whose reply is over max_payload: %s %q, want 400 naming what a tenant can change", code, desc)
	}
}

package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSelfCreateInABearerRoleRefused: a role whose template gives
// bearer_token makes JWTs that connect without their seed. A self-service
// reply travels on an inbox in the tenant's account, which other users of
// the account may be allowed to read (the reason a tenant never gets a
// seed in the clear), so such a JWT there was as good as a seed in the
// clear, whatever key the tenant sent. Self-service refuses such roles;
// an admin issues their users.
func TestSelfCreateInABearerRoleRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{
	"name": "acme",
	"roles": {
		"kiosk": {"pub": {"allow": ["telemetry.>"]}, "bearer_token": true},
		"enroller": {"pub": {"allow": ["prov.self.user.*"]}, "sub": {"allow": ["_INBOX.>"]}}
	},
	"self_service": true,
	"self_service_role": "enroller"
}`)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := h.env.Connect(t, enroller)
	data, _ := json.Marshal(map[string]string{"name": "k1", "role": "kiosk", "public_key": newUserPub(t)})
	rep, err := tenant.Request("prov.self.user.create", data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rep.Data), `"jwt"`) {
		t.Errorf("the tenant got a bearer JWT on its inbox: %s", rep.Data)
	}
	if c := rep.Header.Get("Nats-Service-Error-Code"); c != "403" || !strings.Contains(string(rep.Data), "bearer") {
		t.Errorf("self-service in a bearer role: code %q (%s), want 403 naming bearer", c, rep.Data)
	}
	// An admin still issues users of that role.
	h.ok(t, "user.create", `{"account":"acme","name":"k2","role":"kiosk","public_key":"`+newUserPub(t)+`"}`)
}

package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/api"
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

// TestRoleMadeBearerOverSelfServiceUsersRefused: the server applies a
// scoped key's template as it is now to every user the key signed, its
// bearer_token included. A role turned bearer made the JWTs of its
// self-service users, which travelled on the tenant's inbox where other
// users of the account may read them, connect without their seed: what
// self-service refuses a bearer role for. The change is refused while the
// role has active self-service users.
func TestRoleMadeBearerOverSelfServiceUsersRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", tenantAccount)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := h.env.Connect(t, enroller)
	data, _ := json.Marshal(map[string]string{"name": "d1", "role": "device", "public_key": newUserPub(t)})
	rep, err := tenant.Request("prov.self.user.create", data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var created api.CreateUserReply
	if err := json.Unmarshal(rep.Data, &created); err != nil || created.User.JWT == "" {
		t.Fatalf("self.user.create: %s", rep.Data)
	}
	r := h.req(t, "account.update", `{"account":"acme","roles":{"device":{"pub":{"allow":["telemetry.>"]},"sub":{"allow":["cmd.>"]},"bearer_token":true}}}`)
	if r.Code == 400 && strings.Contains(r.Description, "bearer") && strings.Contains(r.Description, created.User.PublicKey) {
		return
	}
	// Anyone who read the JWT on the tenant's inbox now connects as d1,
	// without its seed.
	nc, cerr := nats.Connect(h.env.Server.URL(), nats.UserJWT(func() (string, error) { return created.User.JWT, nil }, func([]byte) ([]byte, error) { return nil, nil }), nats.NoReconnect())
	if cerr == nil {
		nc.Close()
	}
	t.Errorf("a role with an active self-service user made bearer: %d %q (connecting with its JWT alone: %v), want 400 naming bearer and the user", r.Code, r.Description, cerr)
}

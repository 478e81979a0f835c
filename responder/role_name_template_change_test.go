package responder_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestRoleTemplateChangeToNameKeepsUsersInTheirSubjects: a role whose
// template does not use {{name()}} takes any name, "*" included. When the
// template is later changed to put the name into subjects, the server
// applies the new template to the users the role's key signed before: a
// tenant's device named "*" would reconnect with "telemetry.*.>", every
// device's telemetry. The change is refused while such a user is active.
func TestRoleTemplateChangeToNameKeepsUsersInTheirSubjects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{
		"name": "acme",
		"roles": {
			"device": {"pub": {"allow": ["telemetry.>"]}},
			"enroller": {"pub": {"allow": ["prov.self.user.*"]}, "sub": {"allow": ["_INBOX.>"]}}
		},
		"self_service": true,
		"self_service_role": "enroller"
	}`)
	enrollerCreds, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	enroller := h.env.Connect(t, enrollerCreds)

	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	body, _ := json.Marshal(map[string]string{"name": "*", "role": "device", "public_key": pub})
	m, err := enroller.Request("prov.self.user.create", body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
		t.Fatalf("self.user.create \"*\" under a template without {{name()}}: %s %s", c, m.Data)
	}
	var rep api.CreateUserReply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		t.Fatal(err)
	}
	data, _ := jwt.FormatUserConfig(rep.User.JWT, seed)
	creds := filepath.Join(t.TempDir(), "star.creds")
	if err := os.WriteFile(creds, data, 0o600); err != nil {
		t.Fatal(err)
	}

	r := h.req(t, "account.update", `{"account":"acme","roles":{"device":{"pub":{"allow":["telemetry.{{name()}}.>"]}}}}`)
	if r.Code == api.CodeInvalid && strings.Contains(r.Description, "name") {
		// Once the user is revoked, the template may change.
		h.ok(t, "user.revoke", map[string]string{"account": "acme", "user": pub})
		h.ok(t, "account.update", `{"account":"acme","roles":{"device":{"pub":{"allow":["telemetry.{{name()}}.>"]}}}}`)
		return
	}
	if r.Code != 0 {
		t.Fatalf("account.update: %d %q, want 400 naming the user's name", r.Code, r.Description)
	}
	var v violations
	dev := h.env.Connect(t, creds, nats.ErrorHandler(v.handler))
	dev.Publish("telemetry.d2.temp", nil)
	escaped := !v.has(t, dev, "telemetry.d2.temp")
	t.Errorf("the template change was accepted with an active device named \"*\" (may publish d2's telemetry: %t); want 400", escaped)
}

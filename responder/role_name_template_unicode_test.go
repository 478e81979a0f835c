package responder_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestRoleNameTemplateWithUnicodeSpace: the server reads a template
// function with any white space strings.TrimSpace trims inside its braces:
// "{{\u00a0name()\u00a0}}" (no-break spaces, as a template pasted from a web
// page has them) is {{name()}} to it. The service's check of a tenant's
// name against a template that uses the name must see it as the server
// does: a device named "*" would get "telemetry.*.>".
func TestRoleNameTemplateWithUnicodeSpace(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	for i, fn := range []string{"{{\u00a0name()\u00a0}}", "{{\vname()}}", "{{\u2003NAME()}}"} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			acct := fmt.Sprintf("acme%d", i)
			body, _ := json.Marshal(map[string]any{
				"name": acct,
				"roles": map[string]any{
					"device":   map[string]any{"pub": map[string]any{"allow": []string{"telemetry." + fn + ".>"}}},
					"enroller": map[string]any{"pub": map[string]any{"allow": []string{"prov.self.user.*"}}, "sub": map[string]any{"allow": []string{"_INBOX.>"}}},
				},
				"self_service":      true,
				"self_service_role": "enroller",
			})
			if r := h.req(t, "account.create", string(body)); r.Code != 0 {
				t.Skipf("the template %q is refused: %d %q", fn, r.Code, r.Description)
			}
			enrollerCreds, _ := h.userCreds(t, fmt.Sprintf(`{"account":%q,"name":"backend","role":"enroller"}`, acct))
			enroller := h.env.Connect(t, enrollerCreds)
			kp, _ := nkeys.CreateUser()
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			req, _ := json.Marshal(map[string]string{"name": "*", "role": "device", "public_key": pub})
			m, err := enroller.Request("prov.self.user.create", req, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if c := m.Header.Get("Nats-Service-Error-Code"); c == "400" {
				return
			} else if c != "" {
				t.Fatalf("self.user.create \"*\": %s %s, want 400", c, m.Data)
			}
			var rep api.CreateUserReply
			json.Unmarshal(m.Data, &rep)
			data, _ := jwt.FormatUserConfig(rep.User.JWT, seed)
			creds := filepath.Join(t.TempDir(), "star.creds")
			os.WriteFile(creds, data, 0o600)
			var v violations
			dev := h.env.Connect(t, creds, nats.ErrorHandler(v.handler))
			dev.Publish("telemetry.d2.temp", nil)
			escaped := !v.has(t, dev, "telemetry.d2.temp")
			t.Errorf("template %q: a device named \"*\" was issued (may publish d2's telemetry: %t); want 400", fn, escaped)
		})
	}
}

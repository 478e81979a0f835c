package responder_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestSelfServiceNameCannotWidenRoleTemplate: a role template may use the
// server's {{name()}} template (as nsc's scoped keys do), and the tenant
// picks the name of the users it issues. A name that is not one literal
// subject token ("*", ">", "a.b") would turn "telemetry.{{name()}}.>" into
// a wildcard over every device's subjects: the tenant's user escapes its
// role. Such a name is refused, and a device with a plain name stays in
// its own subjects.
func TestSelfServiceNameCannotWidenRoleTemplate(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{
		"name": "acme",
		"roles": {
			"device": {"pub": {"allow": ["telemetry.{{name()}}.>"]}, "sub": {"allow": ["cmd.{{name()}}"]}},
			"enroller": {"pub": {"allow": ["prov.self.user.*"]}, "sub": {"allow": ["_INBOX.>"]}}
		},
		"self_service": true,
		"self_service_role": "enroller"
	}`)
	enrollerCreds, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	enroller := h.env.Connect(t, enrollerCreds)

	issue := func(t *testing.T, name string) (code int, desc, creds string) {
		t.Helper()
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		body, _ := json.Marshal(map[string]string{"name": name, "role": "device", "public_key": pub})
		m, err := enroller.Request("prov.self.user.create", body, 10*time.Second)
		if err != nil {
			t.Fatalf("self.user.create %q: %v", name, err)
		}
		if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
			n, _ := strconv.Atoi(c)
			return n, m.Header.Get("Nats-Service-Error"), ""
		}
		var rep api.CreateUserReply
		if err := json.Unmarshal(m.Data, &rep); err != nil {
			t.Fatal(err)
		}
		data, _ := jwt.FormatUserConfig(rep.User.JWT, seed)
		creds = filepath.Join(t.TempDir(), "device.creds")
		if err := os.WriteFile(creds, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return 0, "", creds
	}

	// A plain name: the device publishes its own telemetry and no other's.
	if code, desc, creds := issue(t, "d1"); code != 0 {
		t.Fatalf("self.user.create d1: %d %q", code, desc)
	} else {
		var v violations
		dev := h.env.Connect(t, creds, nats.ErrorHandler(v.handler))
		dev.Publish("telemetry.d2.temp", nil)
		if !v.has(t, dev, "telemetry.d2.temp") {
			t.Fatal("device d1 may publish d2's telemetry")
		}
	}

	for _, name := range []string{"*", ">", "d2.x", "d 2"} {
		t.Run(name, func(t *testing.T) {
			code, desc, creds := issue(t, name)
			if code == api.CodeInvalid && strings.Contains(desc, "name") {
				return
			}
			if code != 0 {
				t.Fatalf("self.user.create %q: %d %q, want 400 naming the name", name, code, desc)
			}
			var v violations
			dev := h.env.Connect(t, creds, nats.ErrorHandler(v.handler))
			dev.Publish("telemetry.d2.temp", nil)
			escaped := !v.has(t, dev, "telemetry.d2.temp")
			t.Errorf("a device named %q was issued (escaped its role: may publish d2's telemetry: %t); want 400", name, escaped)
		})
	}
}

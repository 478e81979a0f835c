package responder_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// tenantAccount is the account the self-service tests run on: a "device"
// role that may only publish telemetry and receive commands, an
// "enroller" role whose users may self-serve, a quota of two.
const tenantAccount = `{
	"name": "acme",
	"roles": {
		"device": {"pub": {"allow": ["telemetry.>"]}, "sub": {"allow": ["cmd.>"]}},
		"enroller": {"pub": {"allow": ["prov.self.user.*"]}, "sub": {"allow": ["_INBOX.>"]}}
	},
	"self_service": true,
	"self_service_quota": 2,
	"self_service_role": "enroller"
}`

// violations collects the permission violations a connection is told of.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
}

func (v *violations) has(t *testing.T, nc *nats.Conn, what string) bool {
	t.Helper()
	nc.Flush()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, what) {
				v.mu.Unlock()
				return true
			}
		}
		v.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// userCreds issues a user through the admin endpoint and writes its creds.
func (h *harness) userCreds(t *testing.T, body string) (string, api.User) {
	t.Helper()
	r := h.req(t, "user.create", body)
	if r.Code != 0 {
		t.Fatalf("user.create %s: %d %q", body, r.Code, r.Description)
	}
	var rep api.CreateUserReply
	if err := json.Unmarshal(r.Raw, &rep); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), rep.User.Name+".creds")
	if err := os.WriteFile(p, []byte(rep.User.Creds), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, rep.User
}

// enrollerTenant issues acme's enroller user "backend" and connects as
// it: a tenant's connection.
func (h *harness) enrollerTenant(t *testing.T) *nats.Conn {
	t.Helper()
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	return h.env.Connect(t, enroller)
}

// eventsOn subscribes an admin connection to subject and gives the events
// that come on it.
func (h *harness) eventsOn(t *testing.T, subject string) <-chan api.Event {
	t.Helper()
	events := h.env.Admin(t)
	got := make(chan api.Event, 16)
	if _, err := events.Subscribe(subject, func(m *nats.Msg) {
		var e api.Event
		json.Unmarshal(m.Data, &e)
		got <- e
	}); err != nil {
		t.Fatal(err)
	}
	events.Flush()
	return got
}

// selfReq sends a tenant's prov.self.user.<op> with body and returns the
// reply's error code and description ("" for a success).
func selfReq(t *testing.T, tenant *nats.Conn, op string, body map[string]string) (code, desc string) {
	t.Helper()
	data, _ := json.Marshal(body)
	rep, err := tenant.Request("prov.self.user."+op, data, 10*time.Second)
	if err != nil {
		t.Fatalf("self.user.%s: %v", op, err)
	}
	return rep.Header.Get("Nats-Service-Error-Code"), rep.Header.Get("Nats-Service-Error")
}

func TestRolesAndSelfService(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	events := h.env.Admin(t)
	var evMu sync.Mutex
	var got []api.Event
	var raw []string
	if _, err := events.Subscribe("prov.events.>", func(m *nats.Msg) {
		var e api.Event
		json.Unmarshal(m.Data, &e)
		evMu.Lock()
		got, raw = append(got, e), append(raw, string(m.Data))
		evMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	events.Flush()

	acct := h.ok(t, "account.create", tenantAccount)
	pub := str(acct, "account", "public_key")
	h.ok(t, "account.create", `{"name":"other","self_service":true,"roles":{"device":{}}}`)
	info := h.ok(t, "account.get", `{"account":"acme"}`)
	if roles := info["account"].(map[string]any)["roles"]; fmt.Sprint(roles) != "[device enroller]" || info["account"].(map[string]any)["self_service_quota"] != float64(2) {
		t.Fatalf("account.get = %v", info["account"])
	}

	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	plain, _ := h.userCreds(t, `{"account":"acme","name":"plain"}`)
	if r := h.req(t, "user.create", `{"account":"acme","name":"x","role":"device","permissions":{"pub":{"allow":[">"]}}}`); r.Code != 400 || !strings.Contains(r.Description, "role") {
		t.Errorf("a role user with its own permissions: %d %q, want 400", r.Code, r.Description)
	}

	var v violations
	tenant := h.env.Connect(t, enroller, nats.ErrorHandler(v.handler))
	self := func(nc *nats.Conn, op string, body any, hdr string) provtest.Reply {
		t.Helper()
		data, _ := json.Marshal(body)
		m := nats.NewMsg("prov.self.user." + op)
		m.Data = data
		if hdr != "" {
			m.Header.Set("Nats-Request-Info", hdr)
		}
		rep, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatalf("self.user.%s: %v", op, err)
		}
		r := provtest.Reply{Raw: rep.Data}
		if c := rep.Header.Get("Nats-Service-Error-Code"); c != "" {
			fmt.Sscan(c, &r.Code)
			r.Description = rep.Header.Get("Nats-Service-Error")
		}
		json.Unmarshal(rep.Data, &r.Body)
		return r
	}

	// A device user, issued by the tenant, gets exactly the role.
	dkp, _ := nkeys.CreateUser()
	dpub, _ := dkp.PublicKey()
	dseed, _ := dkp.Seed()
	r := self(tenant, "create", map[string]string{"name": "d1", "role": "device", "public_key": dpub}, "")
	if r.Code != 0 {
		t.Fatalf("self.user.create: %d %q", r.Code, r.Description)
	}
	djwt := str(r.Body, "user", "jwt")
	uc, err := jwt.DecodeUserClaims(djwt)
	if err != nil || uc.IssuerAccount != pub || uc.Subject != dpub {
		t.Fatalf("the device JWT: %+v %v", uc, err)
	}
	credsFile := filepath.Join(t.TempDir(), "d1.creds")
	creds, _ := jwt.FormatUserConfig(djwt, dseed)
	os.WriteFile(credsFile, creds, 0o600)
	var dv violations
	dev := h.env.Connect(t, credsFile, nats.ErrorHandler(dv.handler))
	if err := dev.Publish("telemetry.temp", []byte("21")); err != nil {
		t.Fatal(err)
	}
	if dv.has(t, dev, "telemetry") {
		t.Error("the device may not publish the telemetry its role allows")
	}
	dev.Publish("admin.shutdown", nil)
	if !dv.has(t, dev, "admin.shutdown") {
		t.Error("the server let a device publish outside its role")
	}

	tests := []struct {
		name string
		nc   *nats.Conn
		op   string
		body any
		hdr  string
		code int
		want string
	}{
		{"no role", tenant, "create", map[string]string{"name": "d2", "public_key": newUserPub(t)}, "", 400, "role"},
		{"a role the account lacks", tenant, "create", map[string]string{"name": "d2", "role": "admin", "public_key": newUserPub(t)}, "", 400, "no role"},
		{"widening the role", tenant, "create", map[string]any{"name": "d2", "role": "device", "public_key": newUserPub(t), "permissions": map[string]any{}}, "", 400, "permissions"},
		{"a caller outside the self-service role", h.env.Connect(t, plain), "create", map[string]string{"name": "d2", "role": "device", "public_key": newUserPub(t)}, "", 403, "enroller"},
		// The service makes no seed for a tenant to receive in the clear:
		// the reply's inbox is in the tenant's account, where other users
		// may subscribe.
		{"neither a public key nor an xkey", tenant, "create", map[string]string{"name": "d2", "role": "device"}, "", 400, "public_key"},
		{"a forged header naming another account", tenant, "list", map[string]string{},
			fmt.Sprintf(`{"acc":%q,"issuer_key":"x"}`, str(h.ok(t, "account.get", `{"account":"other"}`), "account", "public_key")), 0, ""},
		{"revoking an admin-issued user", tenant, "revoke", map[string]string{"user": "plain"}, "", 403, "not issued through self-service"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := self(tt.nc, tt.op, tt.body, tt.hdr)
			if r.Code != tt.code || !strings.Contains(r.Description, tt.want) {
				t.Fatalf("%d %q, want %d mentioning %q", r.Code, r.Description, tt.code, tt.want)
			}
			if tt.hdr != "" {
				// The server replaced the forged header: the list is acme's.
				users, _ := r.Body["users"].([]any)
				if len(users) != 3 {
					t.Fatalf("with a forged header the tenant saw %v", r.Body)
				}
			}
		})
	}

	// The quota: two active self-service users.
	if r := self(tenant, "create", map[string]string{"name": "d2", "role": "device", "public_key": newUserPub(t)}, ""); r.Code != 0 {
		t.Fatalf("second device: %d %q", r.Code, r.Description)
	}
	// Sent with white space around the name and role, which the service
	// trims: the refusal's event names them as the service read them.
	if r := self(tenant, "create", map[string]string{"name": " d3 ", "role": " device ", "public_key": newUserPub(t)}, ""); r.Code != 403 || !strings.Contains(r.Description, "quota") {
		t.Fatalf("past the quota: %d %q, want 403", r.Code, r.Description)
	}
	if r := self(tenant, "revoke", map[string]string{"user": "d1"}, ""); r.Code != 0 {
		t.Fatalf("self revoke: %d %q", r.Code, r.Description)
	}
	if r := self(tenant, "create", map[string]string{"name": "d3", "role": "device", "public_key": newUserPub(t)}, ""); r.Code != 0 {
		t.Fatalf("a device after a revoke freed the quota: %d %q", r.Code, r.Description)
	}
	deadline := time.Now().Add(5 * time.Second)
	for dev.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if dev.IsConnected() {
		t.Error("the revoked device stays connected")
	}

	// An account without self-service gets no responder.
	h.ok(t, "account.update", `{"account":"acme","self_service":false}`)
	time.Sleep(200 * time.Millisecond)
	if _, err := tenant.Request("prov.self.user.list", []byte(`{}`), time.Second); err == nil {
		t.Error("with self-service off the tenant still reaches the responder")
	}

	// Inside the service's own account, its creds may not publish to the
	// self-service subjects at all: no header can be forged there.
	var sv violations
	svc := h.env.Connect(t, h.env.Init.ServiceCreds, nats.ErrorHandler(sv.handler))
	m := nats.NewMsg("prov.self." + pub + ".user.list")
	m.Header.Set("Nats-Request-Info", fmt.Sprintf(`{"acc":%q}`, pub))
	svc.PublishMsg(m)
	if !sv.has(t, svc, "prov.self") {
		t.Error("the service's own creds may publish to the self-service subjects")
	}

	// Every change was an event, none with a seed.
	evMu.Lock()
	defer evMu.Unlock()
	count := map[string]int{}
	for i, e := range got {
		count[e.Type]++
		if provision.LooksLikeSeed(raw[i]) {
			t.Errorf("an event holds a seed: %s", raw[i])
		}
	}
	want := map[string]int{api.EventAccountCreated: 2, api.EventUserCreated: 7, api.EventUserRevoked: 1, api.EventAccountUpdated: 1}
	for k, n := range want {
		if count[k] != n {
			t.Errorf("%d %s events, want %d (all: %v)", count[k], k, n, count)
		}
	}
	tenantEvents := 0
	for _, e := range got {
		if e.Caller.Kind == "tenant" && e.Caller.Account == pub {
			tenantEvents++
		}
		if strings.Contains(e.Result, "quota") && (e.UserName != "d3" || e.Role != "device") {
			t.Errorf("the quota's refusal names user %q, role %q; want them trimmed, d3 and device", e.UserName, e.Role)
		}
	}
	if tenantEvents != 6 {
		t.Errorf("%d events name the tenant as the caller, want 6 (3 issued, 1 refused by the role, 1 refused by the quota, 1 revoke)", tenantEvents)
	}
}

// TestSelfServiceRoleRefusalIsAnEvent: a tenant outside the account's
// self-service role is refused, and the refusal is an event naming the
// caller, as the quota's is (README, Events and audit).
func TestSelfServiceRoleRefusalIsAnEvent(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	got := h.eventsOn(t, "prov.events.>")
	pub := str(h.ok(t, "account.create", tenantAccount), "account", "public_key")
	_, plainCreds := h.createUser(t, "acme", "plain")
	plain := h.env.Connect(t, plainCreds)

	tests := []struct {
		op, body, event string
	}{
		{"create", `{"name":"d1","role":"device"}`, api.EventUserCreated},
		{"revoke", `{"user":"d1"}`, api.EventUserRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			m, err := plain.Request("prov.self.user."+tt.op, []byte(tt.body), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if c := m.Header.Get("Nats-Service-Error-Code"); c != "403" {
				t.Fatalf("self.user.%s outside the role: code %q (%s), want 403", tt.op, c, m.Data)
			}
			deadline := time.After(3 * time.Second)
			for {
				select {
				case e := <-got:
					if e.Type == tt.event && e.Caller.Kind == "tenant" && e.Caller.Account == pub {
						if !strings.HasPrefix(e.Result, "refused") {
							t.Fatalf("the refusal's event has result %q", e.Result)
						}
						return
					}
				case <-deadline:
					t.Fatalf("no %s event for the refused self.user.%s", tt.event, tt.op)
				}
			}
		})
	}
}

// newUserPub makes a user key, as a tenant does, and returns its public key.
func newUserPub(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

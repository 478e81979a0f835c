package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestTenantConnectionNamedBySeedIsNoEventSeed: the caller's name in an
// event is the connection name the tenant chose; a tenant that named its
// connection with a seed (its own, by mistake) must not have that seed
// published to the admins' events and kept in the audit (README, Events
// and audit: "never a seed").
func TestTenantConnectionNamedBySeedIsNoEventSeed(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	events := h.env.Admin(t)
	got := make(chan *nats.Msg, 16)
	if _, err := events.Subscribe("prov.events.>", func(m *nats.Msg) { got <- m }); err != nil {
		t.Fatal(err)
	}
	events.Flush()
	pub := str(h.ok(t, "account.create", tenantAccount), "account", "public_key")
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	tenant := h.env.Connect(t, enroller, nats.Name("backend "+string(seed)))

	m, err := tenant.Request("prov.self.user.create", []byte(`{"name":"d1","role":"device","public_key":"`+newUserPub(t)+`"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
		t.Fatalf("self.user.create: %s %s", c, m.Header.Get("Nats-Service-Error"))
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-got:
			var e api.Event
			json.Unmarshal(m.Data, &e)
			if e.Caller.Kind != "tenant" || e.Caller.Account != pub {
				continue
			}
			if provision.LooksLikeSeed(string(m.Data)) || strings.Contains(string(m.Data), string(seed)) {
				t.Fatalf("the event of the tenant's user.create holds the seed of its connection name: %s", m.Data)
			}
			return
		case <-deadline:
			t.Fatal("no event for the tenant's user.create")
		}
	}
}

package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSelfCreateInARoleThatNeedsTags: a role whose template denies a
// subject holding {{tag(site)}} needs a tag "site:..." on every user (the
// server refuses one without it). A tenant's create in it was refused
// telling the tenant to send "tags":["site:<value>"], which self-service
// does not take (the request has no "tags": 400 unknown field). It must
// say that self-service issues users without tags, and that an admin
// issues users of this role.
func TestSelfCreateInARoleThatNeedsTags(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme","roles":{"device":{"sub":{"allow":["cmd.>"],"deny":["cmd.{{tag(site)}}.admin"]}},"enroller":{}},"self_service":true}`)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := h.env.Connect(t, enroller)
	data, _ := json.Marshal(map[string]string{"name": "d1", "role": "device", "public_key": newUserPub(t)})
	rep, err := tenant.Request("prov.self.user.create", data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	code, desc := rep.Header.Get("Nats-Service-Error-Code"), rep.Header.Get("Nats-Service-Error")
	if code == "" || strings.Contains(desc, `"tags":[`) || !strings.Contains(desc, "without tags") {
		t.Errorf("a tenant's create in a role that needs a tag: %q %q, want a refusal saying self-service issues no tags, not asking for them", code, desc)
	}
}

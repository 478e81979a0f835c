package responder_test

import (
	"strings"
	"testing"

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
	code, desc := selfReq(t, h.enrollerTenant(t), "create", map[string]string{"name": "d1", "role": "device", "public_key": newUserPub(t)})
	if code == "" || strings.Contains(desc, `"tags":[`) || !strings.Contains(desc, "without tags") {
		t.Errorf("a tenant's create in a role that needs a tag: %q %q, want a refusal saying self-service issues no tags, not asking for them", code, desc)
	}
}

package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSelfCreateNameTakenByAnAdminsUser: a tenant's create of a name an
// active user holds is refused (409). The refusal told the tenant to
// "revoke it first" also when an admin issued that user, which a tenant
// may not revoke (403): advice it cannot follow. It now says the name
// must be another; for a self-service user, revoking it stays the advice.
func TestSelfCreateNameTakenByAnAdminsUser(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", tenantAccount)
	tenant := h.enrollerTenant(t)
	h.ok(t, "user.create", `{"account":"acme","name":"taken","role":"device"}`)
	code, desc := selfReq(t, tenant, "create", map[string]string{"name": "taken", "role": "device", "public_key": newUserPub(t)})
	if code != "409" || strings.Contains(desc, "revoke it") || !strings.Contains(desc, "another name") {
		t.Errorf("a tenant's create of a name an admin's user holds: %s %q, want 409 asking for another name, not to revoke a user the tenant may not revoke", code, desc)
	}
	if code, desc := selfReq(t, tenant, "revoke", map[string]string{"user": "taken"}); code != "403" {
		t.Fatalf("precondition: a tenant revoking an admin's user: %s %q, want 403", code, desc)
	}
	// A self-service user of that name the tenant may revoke: the advice stands.
	if code, desc := selfReq(t, tenant, "create", map[string]string{"name": "mine", "role": "device", "public_key": newUserPub(t)}); code != "" {
		t.Fatalf("self create: %s %q", code, desc)
	}
	code, desc = selfReq(t, tenant, "create", map[string]string{"name": "mine", "role": "device", "public_key": newUserPub(t)})
	if code != "409" || !strings.Contains(desc, "revoke it first") {
		t.Errorf("a tenant's create of a name its own self-service user holds: %s %q, want 409 saying to revoke it first", code, desc)
	}
}

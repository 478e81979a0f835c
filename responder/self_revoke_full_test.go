package responder_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
)

// TestSelfRevokeOverTheLimitAdvisesTheTenant: a tenant's revoke whose
// revocation would make the account JWT over the limit (max_payload, less
// room) is refused (400). The refusal told the tenant to "remove
// revocations, tags or permissions", none of which self-service can do: it
// must say the account is full and that an admin makes room.
func TestSelfRevokeOverTheLimitAdvisesTheTenant(t *testing.T) {
	t.Parallel()
	h := newHarnessMaxPayload(t, 8192)
	h.ok(t, "account.create", tenantAccount)
	tenant := h.enrollerTenant(t)
	if code, desc := selfReq(t, tenant, "create", map[string]string{"name": "d1", "role": "device", "public_key": newUserPub(t)}); code != "" {
		t.Fatalf("self create: %s %q", code, desc)
	}
	// An admin's revocations fill the account JWT up to the limit.
	for i := 0; ; i++ {
		r := h.req(t, "user.revoke", fmt.Sprintf(`{"account":"acme","user":%q}`, newUserPub(t)))
		if r.Code == api.CodeInvalid {
			break
		}
		if r.Code != 0 || i > 200 {
			t.Fatalf("filling the account with revocations: %d %q after %d", r.Code, r.Description, i)
		}
	}
	code, desc := selfReq(t, tenant, "revoke", map[string]string{"user": "d1"})
	if code != "400" || strings.Contains(desc, "remove revocations") || !strings.Contains(desc, "admin") {
		t.Errorf("a tenant's revoke over the limit: %s %q, want 400 saying an admin must make room", code, desc)
	}
}

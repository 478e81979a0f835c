package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestRoleBearerAgainstDisallowBearer checks that a role whose template
// gives bearer_token is refused in an account with disallow_bearer, as
// user.create refuses a bearer user there: the server refuses every user
// of such a role. Both orders are refused, naming the role, and nothing
// changes.
func TestRoleBearerAgainstDisallowBearer(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	r := h.req(t, "account.create", `{"name":"both","limits":{"disallow_bearer":true},"roles":{"kiosk":{"bearer_token":true}}}`)
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"kiosk"`) || !strings.Contains(r.Description, "disallow_bearer") {
		t.Errorf("account.create: got %d %q, want 400 naming role \"kiosk\" and disallow_bearer", r.Code, r.Description)
	}
	if g := h.req(t, "account.get", map[string]any{"account": "both"}); g.Code != api.CodeNotFound {
		t.Errorf("account.get after a refused create: got %d %q, want 404", g.Code, g.Description)
	}

	roles := str(h.ok(t, "account.create", `{"name":"roles","roles":{"kiosk":{"bearer_token":true}}}`), "account", "jwt")
	r = h.req(t, "account.update", `{"account":"roles","limits":{"disallow_bearer":true}}`)
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"kiosk"`) {
		t.Errorf("account.update disallow_bearer: got %d %q, want 400 naming role \"kiosk\"", r.Code, r.Description)
	}
	if got := str(h.ok(t, "account.get", map[string]any{"account": "roles"}), "account", "jwt"); got != roles {
		t.Error("a refused update changed the account's JWT")
	}

	strict := str(h.ok(t, "account.create", `{"name":"strict","limits":{"disallow_bearer":true}}`), "account", "jwt")
	r = h.req(t, "account.update", `{"account":"strict","roles":{"kiosk":{"bearer_token":true}}}`)
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"kiosk"`) {
		t.Errorf("account.update role: got %d %q, want 400 naming role \"kiosk\"", r.Code, r.Description)
	}
	if got := str(h.ok(t, "account.get", map[string]any{"account": "strict"}), "account", "jwt"); got != strict {
		t.Error("a refused update changed the account's JWT")
	}
}

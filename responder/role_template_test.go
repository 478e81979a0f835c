package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestRoleTemplateRefusedLikeUser checks that a role's template is held to
// what a user's own permissions and limits are: a subject, a CIDR, a time
// range or a time zone that user.create refuses is refused in a role too,
// on create and on update, naming the role, and nothing changes. Accepted,
// it was pushed, and every user issued in the role got a template the
// server cannot apply (such a user can never connect).
func TestRoleTemplateRefusedLikeUser(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	base := h.ok(t, "account.create", map[string]any{"name": "base", "roles": map[string]any{"ok": map[string]any{}}})
	baseJWT := str(base, "account", "jwt")
	tests := []struct {
		name string
		role string
		want string
	}{
		{"pub subject with a space", `{"pub":{"allow":["a b"]}}`, "a b"},
		{"empty sub subject", `{"sub":{"deny":[""]}}`, "subject cannot be empty"},
		{"bad cidr", `{"limits":{"src":["notacidr"]}}`, "notacidr"},
		{"bad time range", `{"limits":{"times":[{"start":"25:00:00","end":"26:00:00"}]}}`, "25:00:00"},
		{"unknown time zone", `{"limits":{"times_location":"Nowhere/City"}}`, "Nowhere/City"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "acct" + string(rune('a'+i))
			r := h.req(t, "account.create", `{"name":"`+name+`","roles":{"dev":`+tt.role+`}}`)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `role "dev"`) || !strings.Contains(r.Description, tt.want) {
				t.Errorf("account.create: got %d %q, want 400 naming role \"dev\" and %q", r.Code, r.Description, tt.want)
			}
			if g := h.req(t, "account.get", map[string]any{"account": name}); g.Code != api.CodeNotFound {
				t.Errorf("account.get after a refused create: got %d %q, want 404", g.Code, g.Description)
			}
			r = h.req(t, "account.update", `{"account":"base","roles":{"dev":`+tt.role+`}}`)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `role "dev"`) || !strings.Contains(r.Description, tt.want) {
				t.Errorf("account.update: got %d %q, want 400 naming role \"dev\" and %q", r.Code, r.Description, tt.want)
			}
			r = h.req(t, "account.update", `{"account":"base","roles":{"ok":`+tt.role+`}}`)
			if r.Code != api.CodeInvalid {
				t.Errorf("account.update of an existing role: got %d %q, want 400", r.Code, r.Description)
			}
			if got := str(h.ok(t, "account.get", map[string]any{"account": "base"}), "account", "jwt"); got != baseJWT {
				t.Errorf("a refused update changed the account's JWT")
			}
		})
	}
}

// TestRoleTemplateFunctionsWithSpaces: the server lets a template
// function hold spaces inside its braces ("{{ name() }}"), which jwt's
// subject check, run on a role's template, refused as a subject with a
// space. Such a role is taken, and its users are issued.
func TestRoleTemplateFunctionsWithSpaces(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme","roles":{"device":{"pub":{"allow":["telemetry.{{ name() }}.>","t.{{ tag(site) }}"]},"sub":{"allow":["cmd.{{name()}}"]}}}}`)
	h.ok(t, "user.create", `{"account":"acme","name":"d1","role":"device"}`)
	if r := h.req(t, "account.update", `{"account":"acme","roles":{"device":{"pub":{"allow":["a {{ name() }}"]}}}}`); r.Code != api.CodeInvalid {
		t.Errorf("a space outside the braces: %d %q, want 400", r.Code, r.Description)
	}
}

package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestTierNamesAreReplicaCounts checks that a JetStream tier is named for
// a replica count the server looks up ("R1" to "R5"): the server finds a
// stream's limits under "R<replicas>" only, so an account whose tiers are
// named otherwise ("r1", "R 3", "gold") has JetStream that no stream can
// use. Such a name is refused naming it, on create and on update, and
// nothing changes.
func TestTierNamesAreReplicaCounts(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	base := h.ok(t, "account.create", `{"name":"base","limits":{"tiered_limits":{"R1":{"disk_storage":1048576},"R3":{"disk_storage":1048576}}}}`)
	baseJWT := str(base, "account", "jwt")
	for i, tier := range []string{"r1", "R 3", "gold", "R0", "R6", "R01", "R1 "} {
		t.Run(tier, func(t *testing.T) {
			name := "acct" + string(rune('a'+i))
			body := `{"name":"` + name + `","limits":{"tiered_limits":{"` + tier + `":{"disk_storage":1048576}}}}`
			r := h.req(t, "account.create", body)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, "tiered_limits") || !strings.Contains(r.Description, `"`+tier+`"`) {
				t.Errorf("account.create: got %d %q, want 400 naming tier %q", r.Code, r.Description, tier)
			}
			if g := h.req(t, "account.get", map[string]any{"account": name}); g.Code != api.CodeNotFound {
				t.Errorf("account.get after a refused create: got %d %q, want 404", g.Code, g.Description)
			}
			r = h.req(t, "account.update", `{"account":"base","limits":{"tiered_limits":{"R1":{"disk_storage":5},"`+tier+`":{"disk_storage":1048576}}}}`)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"`+tier+`"`) {
				t.Errorf("account.update: got %d %q, want 400 naming tier %q", r.Code, r.Description, tier)
			}
			if got := str(h.ok(t, "account.get", map[string]any{"account": "base"}), "account", "jwt"); got != baseJWT {
				t.Errorf("a refused update changed the account's JWT")
			}
		})
	}
}

// TestFlatMaxBytesRequiredWithTiers: a flat "max_bytes_required" next to
// "tiered_limits" is refused as the other flat JetStream limits are: the
// tiers replace the flat limits, so it was dropped and the request
// answered as done, with no stream held to a max_bytes.
func TestFlatMaxBytesRequiredWithTiers(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	base := h.ok(t, "account.create", `{"name":"base","limits":{"tiered_limits":{"R1":{"disk_storage":1048576}}}}`)
	baseJWT := str(base, "account", "jwt")
	r := h.req(t, "account.create", `{"name":"flat","limits":{"tiered_limits":{"R1":{"disk_storage":1048576}},"max_bytes_required":true}}`)
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, "tiered_limits") {
		t.Errorf("account.create: got %d %q, want 400 naming tiered_limits", r.Code, r.Description)
	}
	if g := h.req(t, "account.get", `{"account":"flat"}`); g.Code != api.CodeNotFound {
		t.Errorf("account.get after a refused create: got %d %q, want 404", g.Code, g.Description)
	}
	r = h.req(t, "account.update", `{"account":"base","limits":{"tiered_limits":{"R1":{"disk_storage":5}},"max_bytes_required":true}}`)
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, "tiered_limits") {
		t.Errorf("account.update: got %d %q, want 400 naming tiered_limits", r.Code, r.Description)
	}
	if got := str(h.ok(t, "account.get", `{"account":"base"}`), "account", "jwt"); got != baseJWT {
		t.Errorf("a refused update changed the account's JWT")
	}
	// In the tier it belongs to, it is taken.
	h.ok(t, "account.update", `{"account":"base","limits":{"tiered_limits":{"R1":{"disk_storage":5,"max_bytes_required":true}}}}`)
}

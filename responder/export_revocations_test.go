package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestExportRevocationsNameAccounts: an export's revocations are matched
// by the server against the importing accounts' keys ("*": all of them).
// A revocation under any other string was stored and pushed, and revoked
// nothing: the import it was meant to cut off went on working. It is
// refused naming the string, on create and on update, and nothing changes.
func TestExportRevocationsNameAccounts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	importer := str(h.ok(t, "account.create", `{"name":"importer"}`), "account", "public_key")
	base := str(h.ok(t, "account.create", `{"name":"base","exports":[{"subject":"svc.>","type":"service"}]}`), "account", "jwt")
	exports := func(key string) string {
		return `[{"subject":"svc.>","type":"service","token_req":true,"revocations":{"` + key + `":1700000000}}]`
	}
	for _, key := range []string{"importer", "U" + importer[1:], "AAAA"} {
		t.Run(key, func(t *testing.T) {
			r := h.req(t, "account.create", `{"name":"exporter","exports":`+exports(key)+`}`)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, "exports[0].revocations") || !strings.Contains(r.Description, key) {
				t.Errorf("account.create: got %d %q, want 400 naming exports[0].revocations and %q", r.Code, r.Description, key)
			}
			if g := h.req(t, "account.get", map[string]any{"account": "exporter"}); g.Code != api.CodeNotFound {
				t.Errorf("account.get after a refused create: got %d %q, want 404", g.Code, g.Description)
			}
			r = h.req(t, "account.update", `{"account":"base","exports":`+exports(key)+`}`)
			if r.Code != api.CodeInvalid || !strings.Contains(r.Description, key) {
				t.Errorf("account.update: got %d %q, want 400 naming %q", r.Code, r.Description, key)
			}
			if got := str(h.ok(t, "account.get", map[string]any{"account": "base"}), "account", "jwt"); got != base {
				t.Error("a refused update changed the account's JWT")
			}
		})
	}
	// An account key and "*" are what the server matches: both taken.
	h.ok(t, "account.update", `{"account":"base","exports":`+exports(importer)+`}`)
	h.ok(t, "account.update", `{"account":"base","exports":`+exports("*")+`}`)
}

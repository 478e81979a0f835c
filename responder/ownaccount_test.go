package responder_test

import (
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestOwnAccountsRefusedOnEitherStore: issue #8 has account.update and
// account.delete of the service's own account answered 403, like the
// system account's, whichever store holds the state. TestServiceAccountIsProtected
// runs on the file store and deletes by name only; this asks by name and
// by key on both stores, and checks the account is left as it was.
func TestOwnAccountsRefusedOnEitherStore(t *testing.T) {
	for _, store := range []string{bootstrap.StoreFile, bootstrap.StoreJetStream} {
		t.Run(store, func(t *testing.T) {
			h := newHarness(t, bootstrap.Options{Store: store})
			svc := h.env.Init.ServiceAccount
			sys := h.env.Init.SystemAccount
			before := str(h.ok(t, "account.get", `{"account":"`+svc+`"}`), "account", "jwt")
			for _, tt := range []struct{ op, body, mention string }{
				{"account.update", `{"account":"PROVISIONER","description":"x"}`, "own account"},
				{"account.update", `{"account":"` + svc + `","description":"x"}`, "own account"},
				{"account.delete", `{"account":"PROVISIONER"}`, "own account"},
				{"account.delete", `{"account":"` + svc + `"}`, "own account"},
				{"account.update", `{"account":"` + sys + `","description":"x"}`, "system account"},
				{"account.delete", `{"account":"` + sys + `"}`, "system account"},
			} {
				if r := h.req(t, tt.op, tt.body); r.Code != 403 || !strings.Contains(r.Description, tt.mention) {
					t.Errorf("%s %s: %d %q, want 403 naming the %s", tt.op, tt.body, r.Code, r.Description, tt.mention)
				}
			}
			if after := str(h.ok(t, "account.get", `{"account":"`+svc+`"}`), "account", "jwt"); after != before {
				t.Errorf("the service account's JWT changed after the refused requests")
			}
		})
	}
}

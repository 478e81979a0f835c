package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestKeyOfAnotherAccountTellsNothingOfIt: a user key issued in one
// account, sent again for a user of another, is refused (a key is issued
// once), and the refusal names nothing of the other account's user. It
// gave the user's name and issue time, which a tenant, free to send any
// key through self-service, could read for keys of other tenants.
func TestKeyOfAnotherAccountTellsNothingOfIt(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	h.ok(t, "account.create", `{"name":"other"}`)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	h.ok(t, "user.create", map[string]any{"account": "acme", "name": "hidden-name", "public_key": pub})
	r := h.req(t, "user.create", map[string]any{"account": "other", "name": "again", "public_key": pub})
	if r.Code != api.CodeConflict {
		t.Fatalf("a key of another account: %d %q, want 409", r.Code, r.Description)
	}
	if strings.Contains(r.Description, "hidden-name") || strings.Contains(r.Description, "acme") {
		t.Errorf("the refusal tells of the other account's user: %q", r.Description)
	}
	// In its own account the refusal may say more: the caller owns it.
	r = h.req(t, "user.create", map[string]any{"account": "acme", "name": "again", "public_key": pub})
	if r.Code != api.CodeConflict || !strings.Contains(r.Description, "hidden-name") {
		t.Errorf("a key issued in the same account: %d %q, want 409 naming the user", r.Code, r.Description)
	}
}

// TestImportOfAKeyOfAnotherKind: an import's "account" that is a public
// key of another kind (a user's) is refused saying so, as "account" is
// elsewhere; it was looked up as a name ("no account named U...").
func TestImportOfAKeyOfAnotherKind(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	r := h.req(t, "account.create", map[string]any{"name": "imp", "imports": []any{map[string]any{"account": pub, "subject": "a", "type": "stream"}}})
	if r.Code != api.CodeInvalid || !strings.Contains(r.Description, "user public key") {
		t.Errorf("an import from a user key: %d %q, want 400 saying it is a user public key", r.Code, r.Description)
	}
	if g := h.req(t, "account.get", `{"account":"imp"}`); g.Code != api.CodeNotFound {
		t.Errorf("account.get after a refused create: %d %q, want 404", g.Code, g.Description)
	}
}

package responder_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestRevokeEventNamesTheRole: README promises user events carry the
// user's role, as user.created's does; an audit that follows a role's
// users (the devices issued by self-service, say) must see their
// revocations too, by a tenant (by name) and by an admin (by key).
func TestRevokeEventNamesTheRole(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	got := h.eventsOn(t, "prov.events.user.revoked")
	h.ok(t, "account.create", tenantAccount)
	enrollerCreds, _ := h.userCreds(t, `{"account":"acme","name":"e1","role":"enroller"}`)
	tenant := h.env.Connect(t, enrollerCreds)
	for _, name := range []string{"d1", "d2"} {
		body := fmt.Sprintf(`{"name":%q,"role":"device","public_key":%q}`, name, newUserPub(t))
		m, err := tenant.Request("prov.self.user.create", []byte(body), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
			t.Fatalf("self.user.create %s: %s %s", name, c, m.Data)
		}
	}
	// The tenant revokes d1 by name; the admin revokes d2 by key.
	if m, err := tenant.Request("prov.self.user.revoke", []byte(`{"user":"d1"}`), 10*time.Second); err != nil || m.Header.Get("Nats-Service-Error-Code") != "" {
		t.Fatalf("self.user.revoke d1: %v %v", err, m)
	}
	var list api.ListUsersReply
	if err := json.Unmarshal(h.req(t, "user.list", `{"account":"acme"}`).Raw, &list); err != nil {
		t.Fatal(err)
	}
	var d2 string
	for _, u := range list.Users {
		if u.Name == "d2" {
			d2 = u.PublicKey
		}
	}
	h.ok(t, "user.revoke", fmt.Sprintf(`{"account":"acme","user":%q}`, d2))
	for _, who := range []string{"tenant", "admin"} {
		select {
		case e := <-got:
			if e.Caller.Kind != who {
				t.Errorf("revoke event of the %s: caller %q", who, e.Caller.Kind)
			}
			if e.Role != "device" {
				t.Errorf("the %s's revocation of %s (%s): event role %q, want %q", who, e.UserName, e.User, e.Role, "device")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no user.revoked event for the %s's revocation", who)
		}
	}
}

package responder_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestUserCreateReplyFits: user.create's reply carries the user JWT twice
// (alone and in the creds), with the seed: a user whose permissions made
// that reply larger than max_payload was issued and recorded, then
// answered 500 "carried out, but its reply would be over max_payload":
// nobody got its seed, and its name stayed taken by an active user, so a
// retry was refused 409. Such a create is refused (400) and records
// nothing.
func TestUserCreateReplyFits(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 65536)
	env.Start(t)
	admin := env.Admin(t)
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatalf("create: %d %q", r.Code, r.Description)
	}
	subjects := make([]string, 2600) // about 30 KB of permissions: a JWT that fits once in a reply, not twice
	for i := range subjects {
		subjects[i] = fmt.Sprintf("s.%06d", i)
	}
	for _, xkey := range []bool{false, true} {
		req := api.CreateUserRequest{Account: "acme", Name: fmt.Sprintf("big-%v", xkey), Permissions: &jwt.Permissions{Pub: jwt.Permission{Allow: subjects}}}
		if xkey {
			kp, err := nkeys.CreateCurveKeys()
			if err != nil {
				t.Fatal(err)
			}
			req.XKey, _ = kp.PublicKey()
		}
		body, _ := json.Marshal(req)
		r := provtest.Request(t, admin, "prov.user.create", string(body))
		switch r.Code {
		case 0:
			if !strings.Contains(string(r.Raw), `"creds":"`) {
				t.Fatalf("user.create (xkey %v) answered without creds: %.200s", xkey, r.Raw)
			}
			continue
		case api.CodeInvalid:
		default:
			t.Fatalf("user.create (xkey %v) of a large user: %d %q, want it issued and answered, or refused (400)", xkey, r.Code, r.Description)
		}
		l := provtest.Request(t, admin, "prov.user.list", `{"account":"acme"}`)
		if strings.Contains(string(l.Raw), req.Name) {
			t.Fatalf("user.create (xkey %v) refused %q, yet user.list shows the user: %.300s", xkey, r.Description, l.Raw)
		}
		if again := provtest.Request(t, admin, "prov.user.create", fmt.Sprintf(`{"account":"acme","name":%q}`, req.Name)); again.Code != 0 {
			t.Fatalf("user.create (xkey %v) refused %q, then a small user of the same name: %d %q", xkey, r.Description, again.Code, again.Description)
		}
	}
}

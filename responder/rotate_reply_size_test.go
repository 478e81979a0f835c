package responder_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestRotateReplyFits: account.rotate's reply carries the new JWT and
// lists every signing key besides (signing_keys, retired, removed): an
// account of many roles whose rotated JWT was just under the largest the
// service signs was rotated and pushed, then answered 500 "carried out,
// but its reply would be over max_payload", and a caller that retried
// rotated it again. Every rotation is answered, or refused (400) and made
// nowhere.
func TestRotateReplyFits(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 65536)
	env.Start(t)
	admin := env.Admin(t)
	roles := map[string]*api.Role{}
	for i := range 40 {
		roles[fmt.Sprintf("r%02d", i)] = &api.Role{}
	}
	refused := false
	for n := 2400; n <= 4000 && !refused; n += 40 {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("t%07d", i)
		}
		name := fmt.Sprintf("big-%d", n)
		body, _ := json.Marshal(api.CreateAccountRequest{Name: name, Tags: tags, Roles: roles})
		if r := provtest.Request(t, admin, "prov.account.create", string(body)); r.Code == api.CodeInvalid {
			break
		} else if r.Code != 0 {
			t.Fatalf("create of %d tags: %d %q", n, r.Code, r.Description)
		}
		before := provtest.Request(t, admin, "prov.account.get", fmt.Sprintf(`{"account":%q}`, name))
		r := provtest.Request(t, admin, "prov.account.rotate", fmt.Sprintf(`{"account":%q}`, name))
		switch r.Code {
		case 0:
			continue
		case api.CodeInvalid:
			refused = true
			after := provtest.Request(t, admin, "prov.account.get", fmt.Sprintf(`{"account":%q}`, name))
			if string(after.Raw) != string(before.Raw) {
				t.Errorf("a rotation of %d tags was refused %q, yet the account changed", n, r.Description)
			}
		default:
			t.Fatalf("a rotation of an account of 40 roles and %d tags: %d %q, want it answered, or refused (400)", n, r.Code, r.Description)
		}
	}
	if !refused {
		t.Fatal("no rotation was refused: the accounts never grew past the limit; make them larger")
	}
}

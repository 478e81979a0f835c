package responder_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestLargestJWTFitsItsReply: the service signed account JWTs up to the
// servers' max_payload, but the reply that carries one back (the JWT, the
// account, a line per server) is sent in max_payload less its headers'
// room: a create whose JWT fell between the two was made and pushed, then
// answered 500 "carried out, but its reply would be over max_payload", and
// a caller that retried made it again. Every create of a growing account
// is answered with its JWT, or refused (400) and made nowhere.
func TestLargestJWTFitsItsReply(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	refused := false
	for n := 700; n <= 1100 && !refused; n += 20 {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("t%07d", i)
		}
		name := fmt.Sprintf("big-%d", n)
		body, _ := json.Marshal(api.CreateAccountRequest{Name: name, Tags: tags})
		r := provtest.Request(t, admin, "prov.account.create", string(body))
		switch r.Code {
		case 0:
		case api.CodeInvalid:
			refused = true
			if g := provtest.Request(t, admin, "prov.account.get", fmt.Sprintf(`{"account":%q}`, name)); g.Code != api.CodeNotFound {
				t.Errorf("a create of %d tags refused %q, yet account.get answers %d", n, r.Description, g.Code)
			}
		default:
			t.Fatalf("a create of %d tags: %d %q, want it made and answered, or refused (400)", n, r.Code, r.Description)
		}
		if r.Code == 0 && !strings.Contains(string(r.Raw), `"jwt":"`) {
			t.Fatalf("a create of %d tags answered without its JWT: %.200s", n, r.Raw)
		}
	}
	if !refused {
		t.Fatal("no create was refused: the accounts never grew past the limit; make them larger")
	}
}

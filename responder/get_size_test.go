package responder_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestGetOfTheLargestAccount: account.get carries the JWT and its decoded
// claims, near twice the JWT's size, while the service signs JWTs up to
// nearly what a reply may carry: an account over about half of max_payload
// was made and updated, but every get of it failed 500 "carried out, but
// its reply would be ... over max_payload". Every account a create made is
// read back: with its claims when they fit, else with claims_omitted and
// the JWT (which holds them).
func TestGetOfTheLargestAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	omitted := false
	for n := 300; n <= 1100; n += 50 {
		tags := make([]string, n)
		for i := range tags {
			tags[i] = fmt.Sprintf("t%07d", i)
		}
		name := fmt.Sprintf("big-%d", n)
		body, _ := json.Marshal(api.CreateAccountRequest{Name: name, Tags: tags})
		if r := provtest.Request(t, admin, "prov.account.create", string(body)); r.Code == api.CodeInvalid {
			break
		} else if r.Code != 0 {
			t.Fatalf("a create of %d tags: %d %q", n, r.Code, r.Description)
		}
		g := provtest.Request(t, admin, "prov.account.get", fmt.Sprintf(`{"account":%q}`, name))
		if g.Code != 0 {
			t.Fatalf("account.get of an account of %d tags the service made: %d %q, want it answered", n, g.Code, g.Description)
		}
		var rep struct {
			Account struct {
				JWT           string             `json:"jwt"`
				Claims        *jwt.AccountClaims `json:"claims"`
				ClaimsOmitted string             `json:"claims_omitted"`
			} `json:"account"`
		}
		if err := json.Unmarshal(g.Raw, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Account.JWT == "" {
			t.Fatalf("account.get of %d tags answered without its JWT", n)
		}
		switch {
		case rep.Account.Claims != nil && rep.Account.ClaimsOmitted != "":
			t.Fatalf("account.get of %d tags: claims and claims_omitted %q both set", n, rep.Account.ClaimsOmitted)
		case rep.Account.Claims == nil && rep.Account.ClaimsOmitted == "":
			t.Fatalf("account.get of %d tags: no claims and no claims_omitted", n)
		case rep.Account.Claims != nil && len(rep.Account.Claims.Tags) != n:
			t.Fatalf("account.get of %d tags: claims with %d tags", n, len(rep.Account.Claims.Tags))
		case rep.Account.ClaimsOmitted != "":
			omitted = true
		}
	}
	if !omitted {
		t.Fatal("no get left its claims out: the accounts never grew past half of max_payload; make them larger")
	}
}

package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSeedAfterJWTPrefixIsRefused: a JWT is skipped whole by the seed
// check (base64 of its claims holds seed-like runs), but anything that
// started "eyJ" was taken for one, dots or not: a seed right after "eyJ"
// (a JWT and a seed pasted together, a name that happens to start so) was
// taken, and an account.get of it was a 404 quoting the seed whole. Only
// a run shaped like a JWT is skipped; a real token still is.
func TestSeedAfterJWTPrefixIsRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	s := string(seed)
	for _, tt := range []struct{ name, op, body string }{
		{"looked up", "account.get", `{"account":"eyJ` + s + `"}`},
		{"as a name", "account.create", `{"name":"eyJ` + s + `"}`},
		{"with a dot after it", "account.create", `{"name":"t1","tags":["eyJ` + s + `.x"]}`},
		{"as the first part of three", "account.create", `{"name":"t2","description":"eyJ` + s + `.eyJ9.c2ln"}`},
		{"in a user's name", "user.create", `{"account":"acme","name":"eyJ` + strings.ToLower(s) + `"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.req(t, tt.op, tt.body)
			if r.Code != 400 || !strings.Contains(r.Description, "seed") {
				t.Errorf("%s: %d %q, want 400 about a seed", tt.op, r.Code, r.Description)
			}
			if strings.Contains(strings.ToUpper(string(r.Raw)), s[2:20]) {
				t.Errorf("the reply echoes the seed: %.300s", r.Raw)
			}
		})
	}
	list := h.ok(t, "account.list", `{}`)
	if n := len(list["accounts"].([]any)); n != 1 {
		t.Errorf("refused requests left accounts behind: %v", list)
	}
	// A real JWT is still skipped whole: a user's JWT in a description.
	u, _ := nkeys.CreateUser()
	upub, _ := u.PublicKey()
	akp, _ := nkeys.CreateAccount()
	uc := jwt.NewUserClaims(upub)
	tok, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	h.ok(t, "account.create", `{"name":"t3","description":"`+tok+`"}`)
}

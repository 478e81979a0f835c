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
	refusedAsSeeds(t, h, s, []seedCase{
		{"looked up", "account.get", `{"account":"eyJ` + s + `"}`},
		{"as a name", "account.create", `{"name":"eyJ` + s + `"}`},
		{"with a dot after it", "account.create", `{"name":"t1","tags":["eyJ` + s + `.x"]}`},
		{"as the first part of three", "account.create", `{"name":"t2","description":"eyJ` + s + `.eyJ9.c2ln"}`},
		{"in a user's name", "user.create", `{"account":"acme","name":"eyJ` + strings.ToLower(s) + `"}`},
	})
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

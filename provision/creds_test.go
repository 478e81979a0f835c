package provision

import (
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// TestFormatCredsMatchesJWTLibrary keeps FormatCreds byte for byte equal to
// jwt.FormatUserConfig, which clients parse.
func TestFormatCredsMatchesJWTLibrary(t *testing.T) {
	acct, _ := nkeys.CreateAccount()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	token, err := jwt.NewUserClaims(pub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	want, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatCreds(token, seed); got != string(want) {
		t.Errorf("FormatCreds =\n%s\nwant\n%s", got, want)
	}
	if j, err := jwt.ParseDecoratedJWT([]byte(FormatCreds(token, seed))); err != nil || j != token {
		t.Errorf("the creds do not parse back: %v", err)
	}
}

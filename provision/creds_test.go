package provision

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
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

// TestReplySizeBoundsTheEncoding: user.create's size check estimates its
// reply without encoding it; the estimate must never be below what
// encoding/json writes (a reply over max_payload would be answered 500
// after the user was recorded), nor far above it.
func TestReplySizeBoundsTheEncoding(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	token := strings.Repeat("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.", 40)
	creds := FormatCreds(token, seed)
	for _, r := range []*api.CreateUserReply{
		{User: api.User{Name: "dev<&>\u2028\"ice", PublicKey: pub, JWT: token, Seed: string(seed), Creds: creds}},
		{User: api.User{Name: "device", PublicKey: pub, JWT: token, Sealed: &api.Sealed{Sender: pub, Seed: strings.Repeat("ab+/", 30), Creds: strings.Repeat("cd+/", 600)}}},
		{User: api.User{Name: "", PublicKey: pub, JWT: token}},
	} {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := replySize(r); got < len(data) || got > len(data)+6*len(r.User.Name)+200 {
			t.Errorf("replySize %d for a reply of %d bytes (name %q, sealed %v)", got, len(data), r.User.Name, r.User.Sealed != nil)
		}
	}
}

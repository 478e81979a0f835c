package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestPrivateKeyRefusedUnechoed: an nkey's encoded private key ("P...",
// what KeyPair.PrivateKey gives) holds the seed's secret as a seed does,
// but did not look like one: sent as a user's public_key it was answered
// 400 "public_key" ... "P...", which is not an nkey, the key quoted in
// the reply, the log and the micro stats. It is refused as a seed is.
func TestPrivateKeyRefusedUnechoed(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	user, _ := nkeys.CreateUser()
	priv, _ := user.PrivateKey()
	curve, _ := nkeys.CreateCurveKeys()
	cpriv, _ := curve.PrivateKey()
	for _, tc := range []struct{ name, op, body, secret string }{
		{"user private key as public_key", "user.create", `{"account":"acme","name":"u1","public_key":"` + string(priv) + `"}`, string(priv)},
		{"lowered, in a tag", "user.create", `{"account":"acme","name":"u2","tags":["` + strings.ToLower(string(priv)) + `"]}`, string(priv)},
		{"curve private key as xkey", "user.create", `{"account":"acme","name":"u3","xkey":"` + string(cpriv) + `"}`, string(cpriv)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.req(t, tc.op, tc.body)
			if r.Code != 400 {
				t.Fatalf("%s: %d %q, want 400", tc.op, r.Code, r.Description)
			}
			if strings.Contains(strings.ToUpper(string(r.Raw)), tc.secret[2:30]) {
				t.Fatalf("the reply echoes the private key: %s", r.Raw)
			}
		})
	}
}

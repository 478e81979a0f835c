package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestPrivateKeyGluedToALetterIsRefused: an nkey's encoded private key
// ("P...") holds the seed's secret and is refused when it starts a run of
// base32, but one pasted right after a capital or a digit ("KEY", "ID7"),
// or lowered after a word, started no run of its own and was taken unless
// it happened to hold "S" and a kind: a curve key's (56 characters) was
// taken most times, stored as a name and echoed in a 404.
func TestPrivateKeyGluedToALetterIsRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	for i := range 10 {
		ckp, _ := nkeys.CreateCurveKeys()
		cp, _ := ckp.PrivateKey()
		ukp, _ := nkeys.CreateUser()
		up, _ := ukp.PrivateKey()
		for _, tt := range []struct{ name, op, body, key string }{
			{"curve key after a word in capitals, looked up", "account.get", `{"account":"KEY` + string(cp) + `"}`, string(cp)},
			{"curve key after a digit, as a name", "account.create", `{"name":"ID7` + string(cp) + `"}`, string(cp)},
			{"user key after a word, lowered, in a tag", "account.create", `{"name":"t1","tags":["mykey` + strings.ToLower(string(up)) + `"]}`, string(up)},
			{"curve key after a word, lowered, as a user's name", "user.create", `{"account":"acme","name":"key` + strings.ToLower(string(cp)) + `"}`, string(cp)},
		} {
			r := h.req(t, tt.op, tt.body)
			if r.Code != 400 || !strings.Contains(r.Description, "seed") {
				t.Errorf("%d, %s: %s: %d %q, want 400 about a seed", i, tt.name, tt.op, r.Code, r.Description)
			}
			if strings.Contains(strings.ToUpper(string(r.Raw)), tt.key[2:20]) {
				t.Errorf("%d, %s: the reply echoes the private key: %.300s", i, tt.name, r.Raw)
			}
		}
	}
	list := h.ok(t, "account.list", `{}`)
	if n := len(list["accounts"].([]any)); n != 1 {
		t.Errorf("refused requests left accounts behind: %d accounts", n)
	}
}

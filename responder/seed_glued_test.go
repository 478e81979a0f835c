package responder_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSeedGluedToALetterIsRefused: README promises seeds are refused
// (400, never echoed) in every string field. A seed typed with its first
// letter twice ("SSUA..."), or pasted right after a capital or a digit
// ("NKEY" then the seed, "ID7" then the seed), does not start a run of
// base32 of its own, and was taken: an account named by it was created,
// signed into its JWT, and an account.get of it was a 404 that echoed it
// whole. Inside a run, a whole seed (its checksum holds) counts.
func TestSeedGluedToALetterIsRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	s := string(seed)
	refusedAsSeeds(t, h, s, []seedCase{
		{"doubled first letter, as a name", "account.create", `{"name":"S` + s + `"}`},
		{"after a word in capitals, in a tag", "account.create", `{"name":"t1","tags":["NKEY` + s + `"]}`},
		{"after a digit, looked up", "account.get", `{"account":"ID7` + s + `"}`},
		{"after a capital, in a user's name", "user.create", `{"account":"acme","name":"X` + s + `"}`},
	})
	// A public key is no seed, though base32 holds such pairs inside.
	for i := 0; i < 50; i++ {
		u, _ := nkeys.CreateUser()
		pub, _ := u.PublicKey()
		if r := h.req(t, "user.create", `{"account":"acme","name":"u`+pub[40:]+`","public_key":"`+pub+`"}`); r.Code != 0 {
			t.Fatalf("user.create with public key %s: %d %q", pub, r.Code, r.Description)
		}
	}
}

// seedCase is a request that carries a secret (a seed or a private key).
type seedCase struct{ name, op, body string }

// refusedAsSeeds sends each case, wants a 400 about a seed whose reply
// does not echo secret in any case, and then finds nothing but acme, the
// account the test made, left behind.
func refusedAsSeeds(t *testing.T, h *harness, secret string, cases []seedCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			r := h.req(t, tt.op, tt.body)
			if r.Code != 400 || !strings.Contains(r.Description, "seed") {
				t.Errorf("%s: %d %q, want 400 about a seed", tt.op, r.Code, r.Description)
			}
			if strings.Contains(strings.ToUpper(string(r.Raw)), strings.ToUpper(secret[2:20])) {
				t.Errorf("the reply echoes the secret: %.300s", r.Raw)
			}
		})
	}
	list := h.ok(t, "account.list", `{}`)
	if n := len(list["accounts"].([]any)); n != 1 {
		t.Errorf("refused requests left accounts behind: %v", list)
	}
}

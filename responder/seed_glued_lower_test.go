package responder_test

import (
	"encoding/base32"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestLoweredSeedGluedToALetterIsRefused: a lowered seed is refused when
// it starts a run of lower-case base32, but one pasted right after a word
// ("nkey", "id7") started no run of its own and was taken: an account
// named by it was created and an account.get of it was a 404 that echoed
// it. Ordinary long lower-case names, tags and subjects, and base32 ids in
// lower case (content ids, onion addresses), which hold "s" and a key
// kind inside as often as any text, must still be accepted.
func TestLoweredSeedGluedToALetterIsRefused(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	s := strings.ToLower(string(seed))
	refusedAsSeeds(t, h, s, []seedCase{
		{"after a word, as a name", "account.create", `{"name":"nkeys` + s + `"}`},
		{"after a digit, looked up", "account.get", `{"account":"id7` + s + `"}`},
		{"doubled first letter, in a tag", "account.create", `{"name":"t1","tags":["s` + s + `"]}`},
		{"between words, in a user's name", "user.create", `{"account":"acme","name":"my` + s + `key"}`},
	})

	// What must stay accepted: long lower-case names with digits, and
	// base32 ids in lower case, 56 to 104 characters, as names and tags.
	names := []string{
		"sourcecodeanalysis2019instance1",
		"customersupportescalationsnotificationsservice2024prod",
		"thequickbrownfoxjumpsoverthelazydogandsomemore2345678words",
		"sensorsanalyticspipelinesunstructuredsubsystemconsumer2026",
		"bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
		"vww6ybal4bd7szmgncyruucpgfkqahzddi37ktceo3ah7ngmcopnpyyd",
	}
	r := rand.New(rand.NewPCG(7, 9))
	for i := range 200 {
		b := make([]byte, 35+r.IntN(28))
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		id := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
		// Content ids start with "b", their base's prefix: a run that
		// starts with "s" or "p" and a kind counts anyway.
		if id = "b" + id; i%2 == 0 {
			id = "bafy" + id[1:]
		}
		names = append(names, id)
	}
	for i, name := range names {
		body, _ := json.Marshal(map[string]any{"account": "acme", "name": name, "tags": []string{name}})
		if r := h.req(t, "user.create", json.RawMessage(body)); r.Code != 0 {
			t.Errorf("user.create %d named %q: %d %q, want success", i, name, r.Code, r.Description)
		}
	}
}

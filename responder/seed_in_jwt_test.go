package responder_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSeedInsideJWTIsRefused: a JWT is skipped whole by the seed check
// (base64 of its claims holds seed-like runs), but a seed inside its
// claims (an activation's name, a field of a token pasted into a
// description) crossed it base64-encoded, one decode away from the clear:
// the token was taken, signed into the account's JWT, stored, pushed and
// echoed in every account.get.
func TestSeedInsideJWTIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	gamma := str(h.ok(t, "account.create", `{"name":"gamma"}`), "account", "public_key")

	// An account this service does not manage, with a private export.
	kp, pub := h.foreignExporter(t)

	ukp, _ := nkeys.CreateUser()
	seed, _ := ukp.Seed()
	s := string(seed)

	// A valid activation whose name holds the seed.
	act := jwt.NewActivationClaims(gamma)
	act.Name = "feed " + s
	act.ImportSubject, act.ImportType = "feed.x", jwt.Stream
	tok, err := act.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	imp, _ := json.Marshal(map[string]any{"account": "gamma", "imports": []map[string]any{
		{"name": "feed", "subject": "feed.x", "account": pub, "type": "stream", "token": tok},
	}})

	// A user's JWT whose name is the seed, pasted into a description.
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = s
	utok, err := uc.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []seedCase{
		{"in an activation token", "account.update", string(imp)},
		{"in a JWT in a description", "account.update", `{"account":"gamma","description":"` + utok + `"}`},
		{"lowered, in a JWT in a description", "account.create", `{"name":"t1","description":"` + jwtWith(t, kp, `{"name":"`+strings.ToLower(s)+`"}`) + `"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := h.req(t, tt.op, tt.body)
			if r.Code != 400 || !strings.Contains(r.Description, "seed") {
				t.Errorf("%s: %d %q, want 400 about a seed", tt.op, r.Code, r.Description)
			}
		})
	}
	got := h.ok(t, "account.get", `{"account":"gamma"}`)
	if claims, _ := json.Marshal(got); strings.Contains(string(claims), tok) || strings.Contains(string(claims), utok) {
		t.Errorf("the account holds the token with the seed: %.300s", claims)
	}

	// A real token is still skipped whole.
	plain := jwt.NewUserClaims(upub)
	ptok, err := plain.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	h.ok(t, "account.create", `{"name":"t2","description":"`+ptok+`"}`)
}

// jwtWith returns a JWT whose claims are the JSON payload, signed by kp.
func jwtWith(t *testing.T, kp nkeys.KeyPair, payload string) string {
	t.Helper()
	head := b64(`{"typ":"JWT","alg":"ed25519-nkey"}`) + "." + b64(payload)
	sig, err := kp.Sign([]byte(head))
	if err != nil {
		t.Fatal(err)
	}
	return head + "." + b64(string(sig))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

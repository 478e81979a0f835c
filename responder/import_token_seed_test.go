package responder_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestImportTokenNotTakenForASeed: an activation token is base64 of JSON
// that holds public keys, and base64 of upper-case base32 is mostly
// upper-case with 0s and 1s, which a seed-like run goes on over: about one
// token in 5,000 holds "SU" (or "SA", ...) and 28 more such characters.
// An account.update sending such a token (an import of another
// operator's account's private export, or imports sent back as
// account.get shows them) was refused 400 "looks like an nkey seed", every
// time: the token is what it is.
func TestImportTokenNotTakenForASeed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	gamma := str(h.ok(t, "account.create", `{"name":"gamma"}`), "account", "public_key")

	// An account this service does not manage, with a private export.
	kp, pub := h.foreignExporter(t)

	// A valid token whose base64 holds a seed-like run.
	var body []byte
	for i := 0; body == nil; i++ {
		if i == 100000 {
			t.Fatal("no token with a seed-like run found")
		}
		act := jwt.NewActivationClaims(gamma)
		act.Name = fmt.Sprintf("feed %d", i)
		act.ImportSubject, act.ImportType = "feed.x", jwt.Stream
		tok, err := act.Encode(kp)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(map[string]any{"account": "gamma", "imports": []map[string]any{
			{"name": "feed", "subject": "feed.x", "account": pub, "type": "stream", "token": tok},
		}})
		// Its parts as plain text (their "eyJ" hidden): a seed-like run.
		if api.LooksLikeSeed(strings.ReplaceAll(tok, "eyJ", ".")) {
			body = b
		}
	}
	r := h.req(t, "account.update", json.RawMessage(body))
	if r.Code != 0 {
		t.Fatalf("account.update with a valid activation token: %d %q, want success", r.Code, r.Description)
	}
}

// foreignExporter pushes an account this service does not manage, signed
// with the operator signing key, with a private stream export feed.x, and
// returns its key pair (to sign activations) and public key.
func (h *harness) foreignExporter(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, _ := nkeys.CreateAccount()
	pub, _ := kp.PublicKey()
	fc := jwt.NewAccountClaims(pub)
	fc.Name = "foreign"
	fc.Exports.Add(&jwt.Export{Subject: "feed.x", Type: jwt.Stream, TokenReq: true})
	seed, err := os.ReadFile(filepath.Join(h.env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	op, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := fc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	sys := h.env.Connect(t, h.env.Init.ProvisionerCreds)
	m, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(signed), 5*time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"code":200`) {
		t.Fatalf("push the foreign account: %v %s", err, m.Data)
	}
	return kp, pub
}

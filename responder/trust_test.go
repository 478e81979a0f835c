package responder_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
)

// TestSeedsRefusedEverywhere: a seed in any string field of any request,
// even written with JSON escapes, is refused with a 400 that does not echo
// it, and nothing is created.
func TestSeedsRefusedEverywhere(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	s := string(seed)
	escaped := `\u0053` + s[1:]
	tests := []struct{ name, op, body string }{
		{"account tag", "account.create", `{"name":"t1","tags":["` + s + `"]}`},
		{"account description", "account.create", `{"name":"t2","description":"my key is ` + s + `"}`},
		{"default permission subject", "account.create", `{"name":"t3","default_permissions":{"pub":{"allow":["` + s + `"]}}}`},
		{"user tag lowercased", "user.create", `{"account":"acme","name":"u1","tags":["` + strings.ToLower(s) + `"]}`},
		{"user permission subject", "user.create", `{"account":"acme","name":"u2","permissions":{"sub":{"deny":["x.` + s + `"]}}}`},
		{"escaped", "user.create", `{"account":"acme","name":"u3","tags":["` + escaped + `"]}`},
		{"update description", "account.update", `{"account":"acme","description":"` + s + `"}`},
		{"as a field name", "account.update", `{"account":"acme","` + s + `":1}`},
		// A number out of float64's range is valid JSON that encoding/json
		// refuses to decode: the escaped seed before it is still a seed,
		// and the export type's own error would quote it.
		{"escaped, then a huge number", "account.create", `{"name":"t4","exports":[{"subject":"a.>","type":"` + escaped + `"}],"limits":{"conn":1e400}}`},
		{"escaped, then an unknown field", "account.create", `{"name":"t5","exports":[{"subject":"a.>","type":"` + escaped + `"}],"zz":1e400}`},
		{"escaped key, then a huge number", "account.update", `{"account":"acme","` + escaped + `":1,"zz":1e400}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.req(t, tt.op, tt.body)
			if r.Code != 400 || !strings.Contains(r.Description, "seed") {
				t.Fatalf("%s: %d %q, want 400 about a seed", tt.op, r.Code, r.Description)
			}
			if strings.Contains(string(r.Raw), s[2:20]) || strings.Contains(strings.ToUpper(string(r.Raw)), s[2:20]) {
				t.Fatalf("the reply echoes the seed: %s", r.Raw)
			}
		})
	}
	// The refusals are counted in the micro stats, which every admin may
	// read: they must not quote the seed either.
	stats, err := h.admin.Request("$SRV.STATS."+h.env.Config.ServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(stats.Data), s[2:20]) {
		t.Errorf("$SRV.STATS quotes the seed: %s", stats.Data)
	}
	list := h.ok(t, "account.list", `{}`)
	if n := len(list["accounts"].([]any)); n != 1 {
		t.Errorf("refused requests left accounts behind: %v", list)
	}
	users := h.ok(t, "user.list", `{"account":"acme"}`)
	if n := len(users["users"].([]any)); n != 0 {
		t.Errorf("refused requests left users behind: %v", users)
	}
	got := h.ok(t, "account.get", `{"account":"acme"}`)
	if strings.Contains(str(got, "account", "jwt"), "description") {
		t.Errorf("the refused update changed the account")
	}
}

// TestSealedUserReply: with an xkey, a generated user's seed and creds
// travel sealed to the caller's curve key: they open with it, not with
// another, and the reply carries no seed in the clear.
func TestSealedUserReply(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	mine, _ := nkeys.CreateCurveKeys()
	minePub, _ := mine.PublicKey()
	other, _ := nkeys.CreateCurveKeys()

	r := h.req(t, "user.create", map[string]string{"account": "acme", "name": "alice", "xkey": minePub})
	if r.Code != 0 {
		t.Fatalf("user.create with an xkey: %d %q", r.Code, r.Description)
	}
	var rep api.CreateUserReply
	if err := json.Unmarshal(r.Raw, &rep); err != nil {
		t.Fatal(err)
	}
	u := rep.User
	if u.Seed != "" || u.Creds != "" || u.Sealed == nil || provision.LooksLikeSeed(string(r.Raw)) {
		t.Fatalf("reply = %s, want the seed and creds sealed only", r.Raw)
	}
	box, _ := base64.StdEncoding.DecodeString(u.Sealed.Seed)
	seed, err := mine.Open(box, u.Sealed.Sender)
	if err != nil {
		t.Fatalf("open the sealed seed with the caller's key: %v", err)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := kp.PublicKey(); pub != u.PublicKey {
		t.Fatalf("the sealed seed is for %s, want %s", pub, u.PublicKey)
	}
	if _, err := other.Open(box, u.Sealed.Sender); err == nil {
		t.Fatal("another curve key opens the sealed seed")
	}
	cbox, _ := base64.StdEncoding.DecodeString(u.Sealed.Creds)
	creds, err := mine.Open(cbox, u.Sealed.Sender)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := jwt.ParseDecoratedJWT(creds); err != nil || tok != u.JWT {
		t.Fatalf("the sealed creds hold another JWT: %v", err)
	}

	for _, tt := range []struct{ name, body string }{
		{"not a curve key", `{"account":"acme","name":"bob","xkey":"` + u.PublicKey + `"}`},
		{"with a public key", `{"account":"acme","name":"bob","xkey":"` + minePub + `","public_key":"` + u.PublicKey + `"}`},
	} {
		if r := h.req(t, "user.create", tt.body); r.Code != 400 || !strings.Contains(r.Description, "xkey") {
			t.Errorf("%s: %d %q, want 400 about xkey", tt.name, r.Code, r.Description)
		}
	}
}

// TestServiceAccountIsProtected: the provisioner's own account is read but
// never changed, by name or key, and its name cannot be taken.
func TestServiceAccountIsProtected(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	svc := h.env.Init.ServiceAccount
	got := h.ok(t, "account.get", `{"account":"PROVISIONER"}`)
	if str(got, "account", "public_key") != svc {
		t.Fatalf("account.get PROVISIONER = %v, want the service account %s", got, svc)
	}
	for _, tt := range []struct{ op, body string }{
		{"account.update", `{"account":"PROVISIONER","limits":{"conn":1}}`},
		{"account.update", `{"account":"` + svc + `","limits":{"conn":1}}`},
		{"account.delete", `{"account":"PROVISIONER"}`},
		{"user.create", `{"account":"PROVISIONER","name":"x"}`},
	} {
		if r := h.req(t, tt.op, tt.body); r.Code != 403 || !strings.Contains(r.Description, "own account") {
			t.Errorf("%s %s: %d %q, want 403", tt.op, tt.body, r.Code, r.Description)
		}
	}
	if r := h.req(t, "account.create", `{"name":"PROVISIONER"}`); r.Code != 409 {
		t.Errorf("creating an account named PROVISIONER: %d %q, want 409", r.Code, r.Description)
	}
}

package responder_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
	"github.com/natsprov/provisioner/responder"
)

// harness is a running deployment with the service and an admin connection.
type harness struct {
	env   *provtest.Env
	admin *nats.Conn
}

func newHarness(t *testing.T, opts bootstrap.Options) *harness {
	t.Helper()
	env := provtest.Deployment(t, opts)
	env.Start(t)
	return &harness{env: env, admin: env.Admin(t)}
}

// newHarnessMaxPayload is newHarness on a server whose max_payload is n.
func newHarnessMaxPayload(t *testing.T, n int) *harness {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, n)
	env.Start(t)
	return &harness{env: env, admin: env.Admin(t)}
}

func (h *harness) req(t *testing.T, op string, body any) provtest.Reply {
	t.Helper()
	return provtest.Request(t, h.admin, "prov."+op, body)
}

// ok sends a request that must succeed and returns its body.
func (h *harness) ok(t *testing.T, op string, body any) map[string]any {
	t.Helper()
	r := h.req(t, op, body)
	if r.Code != 0 {
		t.Fatalf("%s: got error %d %q, want success", op, r.Code, r.Description)
	}
	return r.Body
}

func str(m map[string]any, path ...string) string {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = mm[p]
	}
	s, _ := cur.(string)
	return s
}

// createUser creates a user and writes its creds file.
func (h *harness) createUser(t *testing.T, account, name string) (pub, creds string) {
	t.Helper()
	b := h.ok(t, "user.create", map[string]any{"account": account, "name": name})
	pub = str(b, "user", "public_key")
	creds = filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(creds, []byte(str(b, "user", "creds")), 0o600); err != nil {
		t.Fatal(err)
	}
	return pub, creds
}

func lookup(t *testing.T, nc *nats.Conn, pub string) *jwt.AccountClaims {
	t.Helper()
	m, err := nc.Request(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", pub), nil, 5*time.Second)
	if err != nil {
		t.Fatalf("lookup %s: %v", pub, err)
	}
	c, err := jwt.DecodeAccountClaims(string(m.Data))
	if err != nil {
		t.Fatalf("lookup %s returned no account JWT: %v: %q", pub, err, m.Data)
	}
	return c
}

func TestAccountLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	sys := h.env.Init.SystemAccount
	sysConn := h.env.Connect(t, h.env.Init.ProvisionerCreds)

	created := h.ok(t, "account.create", `{"name":"acme","limits":{"conn":10,"subs":100},"default_permissions":{"pub":{"deny":["secret.>"]}},"tags":["tier:gold"]}`)
	pub := str(created, "account", "public_key")
	if !nkeys.IsValidPublicAccountKey(pub) {
		t.Fatalf("account.create returned public_key %q", pub)
	}
	res, _ := created["resolver"].([]any)
	if len(res) != 1 || res[0].(map[string]any)["message"] != "jwt updated" || res[0].(map[string]any)["code"] != float64(200) {
		t.Fatalf("resolver = %v, want one server saying jwt updated", created["resolver"])
	}
	token := str(created, "account", "jwt")
	claims, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := os.ReadFile(filepath.Join(h.env.Dir, bootstrap.OperatorSigningKeyFile))
	kp, _ := nkeys.FromSeed([]byte(strings.TrimSpace(string(signer))))
	signerPub, _ := kp.PublicKey()
	switch {
	case claims.Issuer != h.env.Init.OperatorSigning || claims.Issuer != signerPub:
		t.Errorf("account issuer = %s, want the operator signing key %s", claims.Issuer, signerPub)
	case claims.Issuer == h.env.Init.Operator:
		t.Errorf("account signed by the operator identity key")
	case len(claims.SigningKeys) != 1:
		t.Errorf("account signing keys = %v, want one", claims.SigningKeys.Keys())
	case claims.Limits.Conn != 10 || claims.Limits.Subs != 100 || claims.Limits.Data != -1:
		t.Errorf("limits = %+v, want conn 10, subs 100, the rest unlimited", claims.Limits)
	case claims.Limits.IsJSEnabled():
		t.Errorf("JetStream enabled without being asked")
	case !claims.DefaultPermissions.Pub.Deny.Contains("secret.>"):
		t.Errorf("default permissions = %+v", claims.DefaultPermissions)
	case !claims.Tags.Contains("tier:gold"):
		t.Errorf("tags = %v", claims.Tags)
	}
	// The server stored exactly what the service returned.
	if got := lookup(t, sysConn, pub); got.ID != claims.ID {
		t.Errorf("resolver holds JWT %s, service returned %s", got.ID, claims.ID)
	}

	for _, ref := range []string{"acme", pub} {
		got := h.ok(t, "account.get", map[string]string{"account": ref})
		if str(got, "account", "public_key") != pub || str(got, "account", "name") != "acme" || str(got, "account", "jwt") != token {
			t.Errorf("account.get %s = %v", ref, got)
		}
		if str(got, "account", "claims", "sub") != pub {
			t.Errorf("account.get %s claims = %v, want decoded claims", ref, got["account"])
		}
	}
	sysGot := h.ok(t, "account.get", map[string]string{"account": sys})
	if str(sysGot, "account", "public_key") != sys || str(sysGot, "account", "name") != "SYS" {
		t.Errorf("account.get of the system account = %v", sysGot)
	}

	h.ok(t, "account.create", `{"name":"beta"}`)
	list := h.ok(t, "account.list", ``)
	accts, _ := list["accounts"].([]any)
	if len(accts) != 2 || accts[0].(map[string]any)["name"] != "acme" || accts[1].(map[string]any)["name"] != "beta" {
		t.Errorf("account.list = %v, want acme and beta (not the system account)", list)
	}

	// Only the given fields change.
	upd := h.ok(t, "account.update", `{"account":"acme","limits":{"conn":5}}`)
	uc, err := jwt.DecodeAccountClaims(str(upd, "account", "jwt"))
	if err != nil {
		t.Fatal(err)
	}
	if uc.Limits.Conn != 5 || uc.Limits.Subs != 100 || !uc.Tags.Contains("tier:gold") || !uc.DefaultPermissions.Pub.Deny.Contains("secret.>") {
		t.Errorf("after update: limits %+v tags %v perms %+v; want conn 5 and everything else kept", uc.Limits, uc.Tags, uc.DefaultPermissions)
	}
	if got := lookup(t, sysConn, pub); got.Limits.Conn != 5 {
		t.Errorf("resolver holds conn %d after update, want 5", got.Limits.Conn)
	}
	upd = h.ok(t, "account.update", `{"account":"acme","tags":[],"limits":{"mem_storage":-1,"disk_storage":1048576}}`)
	uc, _ = jwt.DecodeAccountClaims(str(upd, "account", "jwt"))
	if len(uc.Tags) != 0 || !uc.Limits.IsJSEnabled() || uc.Limits.Conn != 5 {
		t.Errorf("after second update: tags %v limits %+v", uc.Tags, uc.Limits)
	}

	// A user works, then the account is deleted and the user is cut off.
	_, creds := h.createUser(t, "acme", "alice")
	closed := make(chan struct{})
	userConn := h.env.Connect(t, creds, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err := userConn.Publish("hello", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	del := h.ok(t, "account.delete", `{"account":"acme"}`)
	if del["deleted"] != pub {
		t.Errorf("account.delete = %v", del)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Errorf("the user's connection stayed open after its account was deleted")
	}
	if r := h.req(t, "account.get", `{"account":"acme"}`); r.Code != 404 {
		t.Errorf("account.get after delete = %d %q, want 404", r.Code, r.Description)
	}
	if _, err := nats.Connect(h.env.Server.URL(), nats.UserCredentials(creds)); err == nil {
		t.Errorf("a user of a deleted account could connect")
	}
	// The name is free again.
	h.ok(t, "account.create", `{"name":"acme"}`)
}

func TestUserLifecycle(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	acct := h.ok(t, "account.create", `{"name":"acme"}`)
	acctPub := str(acct, "account", "public_key")
	acctClaims, _ := jwt.DecodeAccountClaims(str(acct, "account", "jwt"))
	signingKey := acctClaims.SigningKeys.Keys()[0]

	b := h.ok(t, "user.create", `{"account":"acme","name":"alice","permissions":{"pub":{"allow":["orders.>"]},"sub":{"allow":["_INBOX.>","orders.>"]}},"limits":{"subs":10},"expires_in":"1h"}`)
	u := b["user"].(map[string]any)
	uc, err := jwt.DecodeUserClaims(u["jwt"].(string))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case uc.Issuer != signingKey:
		t.Errorf("user issuer = %s, want the account signing key %s", uc.Issuer, signingKey)
	case uc.IssuerAccount != acctPub:
		t.Errorf("issuer_account = %s, want %s", uc.IssuerAccount, acctPub)
	case uc.Subject != u["public_key"]:
		t.Errorf("subject %s != public_key %v", uc.Subject, u["public_key"])
	case uc.Expires < time.Now().Add(59*time.Minute).Unix() || uc.Expires > time.Now().Add(61*time.Minute).Unix():
		t.Errorf("expires = %v, want in 1h", time.Unix(uc.Expires, 0))
	case uc.Limits.Subs != 10 || !uc.Permissions.Pub.Allow.Contains("orders.>"):
		t.Errorf("limits %+v permissions %+v", uc.Limits, uc.Permissions)
	}
	seed, _ := u["seed"].(string)
	kp, err := nkeys.FromSeed([]byte(seed))
	if err != nil {
		t.Fatalf("seed does not parse: %v", err)
	}
	if p, _ := kp.PublicKey(); p != uc.Subject {
		t.Errorf("seed is for %s, JWT for %s", p, uc.Subject)
	}
	if !strings.Contains(u["creds"].(string), u["jwt"].(string)) || !strings.Contains(u["creds"].(string), seed) {
		t.Errorf("creds do not hold the JWT and the seed")
	}

	// With the caller's key: the JWT only.
	own, _ := nkeys.CreateUser()
	ownPub, _ := own.PublicKey()
	b = h.ok(t, "user.create", map[string]any{"account": acctPub, "name": "bob", "public_key": ownPub, "bearer_token": false})
	u = b["user"].(map[string]any)
	if u["public_key"] != ownPub || u["seed"] != nil || u["creds"] != nil || u["jwt"] == nil {
		t.Errorf("user.create with public_key = %v, want the JWT only", u)
	}

	// The same name is a conflict while the first is active.
	if r := h.req(t, "user.create", `{"account":"acme","name":"alice"}`); r.Code != 409 {
		t.Errorf("second active alice: %d %q, want 409", r.Code, r.Description)
	}

	// No seed is stored anywhere in the store.
	storeFiles, _ := filepath.Glob(filepath.Join(h.env.Config.StoreDir, "*"))
	for _, f := range storeFiles {
		data, _ := os.ReadFile(f)
		if strings.Contains(string(data), seed) {
			t.Errorf("the user's seed is stored in %s", f)
		}
	}

	list := h.ok(t, "user.list", `{"account":"acme"}`)
	users := list["users"].([]any)
	if len(users) != 2 {
		t.Fatalf("user.list = %v, want alice and bob", list)
	}
	h.ok(t, "user.revoke", `{"account":"acme","user":"alice"}`)
	list = h.ok(t, "user.list", `{"account":"acme"}`)
	for _, x := range list["users"].([]any) {
		m := x.(map[string]any)
		if want := m["name"] == "alice"; m["revoked"] != want {
			t.Errorf("user %v revoked = %v, want %v", m["name"], m["revoked"], want)
		}
		if m["issued_at"].(float64) == 0 {
			t.Errorf("user %v has no issued_at", m["name"])
		}
	}
	// Now the name is free again.
	h.ok(t, "user.create", `{"account":"acme","name":"alice"}`)

	// Revoking a key this service never issued works too.
	foreign, _ := nkeys.CreateUser()
	foreignPub, _ := foreign.PublicKey()
	rv := h.ok(t, "user.revoke", map[string]string{"account": "acme", "user": foreignPub})
	if rv["revoked"] != foreignPub {
		t.Errorf("user.revoke of a foreign key = %v", rv)
	}
	rc, _ := jwt.DecodeAccountClaims(str(rv, "account", "jwt"))
	if _, ok := rc.Revocations[foreignPub]; !ok {
		t.Errorf("the pushed JWT does not revoke %s", foreignPub)
	}
}

func TestListsPage(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	for i := range 5 {
		h.ok(t, "account.create", fmt.Sprintf(`{"name":"a%d"}`, i))
		h.ok(t, "user.create", fmt.Sprintf(`{"account":"a0","name":"u%d"}`, i))
	}
	names := func(b map[string]any, key string) []string {
		var out []string
		for _, x := range b[key].([]any) {
			out = append(out, x.(map[string]any)["name"].(string))
		}
		return out
	}
	all := h.ok(t, "account.list", `{}`)
	if got := names(all, "accounts"); fmt.Sprint(got) != "[a0 a1 a2 a3 a4]" || all["total"] != float64(5) || all["next_offset"] != nil {
		t.Errorf("account.list {} = %v", all)
	}
	first := h.ok(t, "account.list", `{"limit":2}`)
	if got := names(first, "accounts"); fmt.Sprint(got) != "[a0 a1]" || first["next_offset"] != float64(2) || first["total"] != float64(5) {
		t.Errorf("first page = %v", first)
	}
	last := h.ok(t, "account.list", `{"offset":4,"limit":2}`)
	if got := names(last, "accounts"); fmt.Sprint(got) != "[a4]" || last["next_offset"] != nil {
		t.Errorf("last page = %v", last)
	}
	// Users are listed in issue order to the second, then by public key:
	// a page is a slice of the whole list.
	allUsers := h.ok(t, "user.list", `{"account":"a0"}`)
	if got := names(allUsers, "users"); len(got) != 5 || allUsers["total"] != float64(5) {
		t.Errorf("user.list {} = %v", allUsers)
	}
	byKey := allUsers["users"].([]any)
	sorted := slices.IsSortedFunc(byKey, func(a, b any) int {
		ua, ub := a.(map[string]any), b.(map[string]any)
		if c := cmp.Compare(ua["issued_at"].(float64), ub["issued_at"].(float64)); c != 0 {
			return c
		}
		return strings.Compare(ua["public_key"].(string), ub["public_key"].(string))
	})
	if !sorted {
		t.Errorf("user.list is not by issued_at, then public key: %v", allUsers)
	}
	users := h.ok(t, "user.list", `{"account":"a0","offset":1,"limit":3}`)
	if got := names(users, "users"); fmt.Sprint(got) != fmt.Sprint(names(allUsers, "users")[1:4]) || users["next_offset"] != float64(4) || users["total"] != float64(5) {
		t.Errorf("user.list page = %v", users)
	}
	if r := h.req(t, "account.list", `{"offset":-1}`); r.Code != 400 {
		t.Errorf("negative offset: %d %q", r.Code, r.Description)
	}
}

func TestUserConnectsUntilRevoked(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	pub, creds := h.createUser(t, "acme", "alice")

	closed := make(chan struct{})
	nc := h.env.Connect(t, creds, nats.MaxReconnects(0), nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	sub, err := nc.SubscribeSync("orders")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("orders", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(2 * time.Second); err != nil {
		t.Fatalf("the issued user cannot use its account: %v", err)
	}

	rv := h.ok(t, "user.revoke", map[string]string{"account": "acme", "user": pub})
	if rv["revoked"] != pub {
		t.Fatalf("user.revoke = %v", rv)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("the revoked user's live connection stayed open")
	}
	_, err = nats.Connect(h.env.Server.URL(), nats.UserCredentials(creds))
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("a revoked user connected again (err %v)", err)
	}
	// Revoked once, the name is unknown to revoke.
	if r := h.req(t, "user.revoke", `{"account":"acme","user":"alice"}`); r.Code != 404 {
		t.Errorf("revoke of a revoked name: %d %q, want 404", r.Code, r.Description)
	}
}

func TestErrors(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	h.ok(t, "user.create", `{"account":"acme","name":"alice"}`)
	sys := h.env.Init.SystemAccount
	userKP, _ := nkeys.CreateUser()
	userPub, _ := userKP.PublicKey()
	acctKP, _ := nkeys.CreateAccount()
	acctPub, _ := acctKP.PublicKey()
	seed, _ := userKP.Seed()
	lower := strings.ToLower(string(seed))
	short := string(seed[:len(seed)-1])
	// A seed with a typo early on: 0 for O, a confusion base32 avoids.
	typo := string(seed[:10]) + "0" + string(seed[11:])
	big := `{"name":"` + strings.Repeat("x", responder.MaxRequestSize) + `"}`

	tests := []struct {
		name, op string
		body     string
		code     int
		mention  string
	}{
		{"bad json", "account.create", `{"name":`, 400, "JSON"},
		{"not an object", "account.create", `["acme"]`, 400, "JSON object"},
		{"wrong type", "account.create", `{"name":5}`, 400, `"name"`},
		{"unknown field", "account.create", `{"name":"x","colour":"red"}`, 400, "colour"},
		{"unknown limit", "account.create", `{"name":"x","limits":{"connections":5}}`, 400, "connections"},
		{"limit of wrong type", "account.create", `{"name":"x","limits":{"conn":"many"}}`, 400, "conn"},
		{"negative limit", "account.create", `{"name":"x","limits":{"conn":-7}}`, 400, "conn"},
		{"empty name", "account.create", `{"name":"  "}`, 400, `"name"`},
		{"missing name", "account.create", `{}`, 400, `"name"`},
		{"name that is a key", "account.create", `{"name":"` + acctPub + `"}`, 400, "public key"},
		{"too large", "account.create", big, 400, "limit"},
		{"trailing data", "account.get", `{"account":"acme"} {}`, 400, "after"},
		{"user key as account", "account.get", `{"account":"` + userPub + `"}`, 400, "user public key"},
		{"seed as account", "account.get", `{"account":"` + string(seed) + `"}`, 400, "seed"},
		{"account key as user key", "user.create", `{"account":"acme","name":"bob","public_key":"` + acctPub + `"}`, 400, "account public key"},
		{"seed as user key", "user.create", `{"account":"acme","name":"bob","public_key":"` + string(seed) + `"}`, 400, "seed"},
		{"lowercased seed as user key", "user.create", `{"account":"acme","name":"bob","public_key":"` + lower + `"}`, 400, "seed"},
		{"truncated seed as user", "user.revoke", `{"account":"acme","user":"` + short + `"}`, 400, "seed"},
		{"truncated seed as account", "account.get", `{"account":"` + short + `"}`, 400, "seed"},
		{"seed as a name", "account.create", `{"name":"` + lower + `"}`, 400, "seed"},
		{"seed with a typo as user key", "user.create", `{"account":"acme","name":"bob","public_key":"` + typo + `"}`, 400, "seed"},
		{"seed with a typo as a name", "account.create", `{"name":"` + typo + `"}`, 400, "seed"},
		{"bad expiry", "user.create", `{"account":"acme","name":"bob","expires_in":"tomorrow"}`, 400, "expires_in"},
		{"account key as user", "user.revoke", `{"account":"acme","user":"` + acctPub + `"}`, 400, "account public key"},
		{"empty user", "user.revoke", `{"account":"acme","user":""}`, 400, `"user"`},
		{"missing account", "user.list", `{}`, 400, `"account"`},
		{"update system account", "account.update", `{"account":"` + sys + `","limits":{"conn":1}}`, 403, "system account"},
		{"update system account by name", "account.update", `{"account":"SYS","limits":{"conn":1}}`, 403, "system account"},
		{"delete system account", "account.delete", `{"account":"` + sys + `"}`, 403, "system account"},
		{"user in system account", "user.create", `{"account":"` + sys + `","name":"x"}`, 403, "system account"},
		{"revoke in system account", "user.revoke", `{"account":"SYS","user":"` + userPub + `"}`, 403, "system account"},
		{"list system users", "user.list", `{"account":"SYS"}`, 403, "system account"},
		{"unknown name", "account.get", `{"account":"nope"}`, 404, "nope"},
		{"unknown key", "account.get", `{"account":"` + acctPub + `"}`, 404, acctPub},
		{"update unknown", "account.update", `{"account":"nope","limits":{"conn":1}}`, 404, "nope"},
		{"delete unknown", "account.delete", `{"account":"nope"}`, 404, "nope"},
		{"user in unknown account", "user.create", `{"account":"nope","name":"x"}`, 404, "nope"},
		{"revoke unknown name", "user.revoke", `{"account":"acme","user":"zed"}`, 404, "zed"},
		{"duplicate account", "account.create", `{"name":"acme"}`, 409, "acme"},
		{"system account name", "account.create", `{"name":"SYS"}`, 409, "system account"},
		{"duplicate active user", "user.create", `{"account":"acme","name":"alice"}`, 409, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.ok(t, "account.list", `{}`)
			r := h.req(t, tt.op, tt.body)
			if r.Code != tt.code {
				t.Fatalf("%s %s: code %d %q, want %d", tt.op, tt.body[:min(len(tt.body), 80)], r.Code, r.Description, tt.code)
			}
			if !strings.Contains(r.Description, tt.mention) {
				t.Errorf("description %q does not mention %q", r.Description, tt.mention)
			}
			for _, secret := range []string{string(seed), lower, short, typo} {
				if strings.Contains(strings.ToLower(string(r.Raw)), strings.ToLower(secret[:40])) {
					t.Errorf("the reply echoes a seed: %s", r.Raw)
				}
			}
			e, _ := r.Body["error"].(map[string]any)
			if e == nil || e["code"] != float64(tt.code) || e["description"] != r.Description {
				t.Errorf("body %s does not match the headers (%d, %q)", r.Raw, r.Code, r.Description)
			}
			if after := h.ok(t, "account.list", `{}`); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a failed request changed the accounts: %v -> %v", before, after)
			}
		})
	}
}

func TestConcurrentRevocationsAllLand(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	acct := h.ok(t, "account.create", `{"name":"acme"}`)
	pub := str(acct, "account", "public_key")
	const n = 40
	users := make([]string, n)
	for i := range users {
		users[i], _ = h.createUser(t, "acme", fmt.Sprintf("u%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range users {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			by := users[i]
			if i%2 == 1 {
				by = fmt.Sprintf("u%d", i) // half by name, half by key
			}
			m, err := h.admin.Request("prov.user.revoke", fmt.Appendf(nil, `{"account":%q,"user":%q}`, pub, by), 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
				errs <- fmt.Errorf("revoke %s: %s %s", by, c, m.Header.Get("Nats-Service-Error"))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check := func(where string, c *jwt.AccountClaims) {
		t.Helper()
		missing := 0
		for _, u := range users {
			if _, ok := c.Revocations[u]; !ok {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%s: %d of %d revocations lost", where, missing, n)
		}
	}
	got := h.ok(t, "account.get", map[string]string{"account": pub})
	c, _ := jwt.DecodeAccountClaims(str(got, "account", "jwt"))
	check("service", c)
	check("resolver", lookup(t, h.env.Connect(t, h.env.Init.ProvisionerCreds), pub))
}

func TestConcurrentCreatesOfOneName(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := h.admin.Request("prov.account.create", []byte(`{"name":"same"}`), 30*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			c := 0
			fmt.Sscan(m.Header.Get("Nats-Service-Error-Code"), &c)
			codes <- c
		}()
	}
	wg.Wait()
	close(codes)
	okCount, conflicts := 0, 0
	for c := range codes {
		switch c {
		case 0:
			okCount++
		case 409:
			conflicts++
		default:
			t.Errorf("unexpected code %d", c)
		}
	}
	if okCount != 1 || conflicts != 7 {
		t.Errorf("8 concurrent creates of one name: %d succeeded, %d conflicts; want 1 and 7", okCount, conflicts)
	}
}

func TestRestartKeepsKeys(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	created := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`)
	before, _ := jwt.DecodeAccountClaims(str(created.Body, "account", "jwt"))
	provtest.Request(t, admin, "prov.user.create", `{"account":"acme","name":"alice"}`)
	if err := svc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	env.Start(t)
	got := provtest.Request(t, admin, "prov.account.get", `{"account":"acme"}`)
	if got.Code != 0 || str(got.Body, "account", "public_key") != before.Subject {
		t.Fatalf("after restart account.get = %d %s", got.Code, got.Raw)
	}
	list := provtest.Request(t, admin, "prov.user.list", `{"account":"acme"}`)
	if users, _ := list.Body["users"].([]any); len(users) != 1 {
		t.Errorf("after restart user.list = %s, want alice", list.Raw)
	}
	u := provtest.Request(t, admin, "prov.user.create", `{"account":"acme","name":"bob"}`)
	uc, err := jwt.DecodeUserClaims(str(u.Body, "user", "jwt"))
	if err != nil {
		t.Fatalf("user.create after restart: %s", u.Raw)
	}
	if uc.Issuer != before.SigningKeys.Keys()[0] {
		t.Errorf("after restart users are signed by %s, want the same signing key %s", uc.Issuer, before.SigningKeys.Keys()[0])
	}
	creds := filepath.Join(t.TempDir(), "bob.creds")
	os.WriteFile(creds, []byte(str(u.Body, "user", "creds")), 0o600)
	env.Connect(t, creds)

	// Store files are private.
	for _, f := range []string{"", "journal", "snapshot.json"} {
		p := filepath.Join(env.Config.StoreDir, f)
		st, err := os.Stat(p)
		if err != nil {
			continue // the snapshot exists only after a compaction
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v; others can read it", p, st.Mode().Perm())
		}
	}
}

// TestDeleteWithoutServerDeletes: where servers do not allow deletes
// (init --no-delete), the disabled version is a delete's end state: the
// DELETE the servers refuse does not bring the account back, its users are
// out, and the service forgets it.
func TestDeleteWithoutServerDeletes(t *testing.T) {
	h := newHarness(t, bootstrap.Options{NoDelete: true})
	acct := h.ok(t, "account.create", `{"name":"acme","limits":{"conn":7}}`)
	pub := str(acct, "account", "public_key")
	_, creds := h.createUser(t, "acme", "alice")
	alive, err := nats.Connect(h.env.Server.URL(), nats.UserCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()

	got := h.ok(t, "account.delete", `{"account":"acme"}`)
	if got["phase"] != "deleted" || got["deleted"] != pub {
		t.Fatalf("delete with allow_delete false = %v, want phase deleted", got)
	}
	server := lookup(t, h.env.Connect(t, h.env.Init.ProvisionerCreds), pub)
	if server.Limits.Conn != 0 || server.Revocations[jwt.All] == 0 {
		t.Errorf("the resolver holds limits %+v revocations %v; want the disabled version", server.Limits, server.Revocations)
	}
	if _, err := nats.Connect(h.env.Server.URL(), nats.UserCredentials(creds)); err == nil {
		t.Error("a user of the deleted account connects")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive.IsConnected() {
		t.Error("a connection of the deleted account stays open")
	}
	if r := h.req(t, "account.get", `{"account":"acme"}`); r.Code != 404 {
		t.Errorf("account.get after the delete: %d %q, want 404", r.Code, r.Description)
	}
	// The name is free again, for a new account with a new key.
	again := h.ok(t, "account.create", `{"name":"acme"}`)
	if str(again, "account", "public_key") == pub {
		t.Error("a new account reused the deleted account's key")
	}
}

func TestResolverFull(t *testing.T) {
	// The system account and the service's own account (both preloaded)
	// take one slot of the limit each.
	h := newHarness(t, bootstrap.Options{ResolverLimit: 4})
	h.ok(t, "account.create", `{"name":"a1"}`)
	h.ok(t, "account.create", `{"name":"a2"}`)
	r := h.req(t, "account.create", `{"name":"a3"}`)
	if r.Code != 502 || !strings.Contains(r.Description, "jwt store is full") {
		t.Fatalf("create past the resolver limit: %d %q, want 502 jwt store is full", r.Code, r.Description)
	}
	list := h.ok(t, "account.list", `{}`)
	if accts := list["accounts"].([]any); len(accts) != 2 {
		t.Errorf("a refused create left an account behind: %v", list)
	}
	if r := h.req(t, "account.get", `{"account":"a3"}`); r.Code != 404 {
		t.Errorf("account.get of the refused account: %d", r.Code)
	}
}

// TestResolverSilent runs the service on a server where nobody answers the
// claims API: every push is a 504 and changes nothing.
func TestResolverSilent(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go plain.Start()
	if !plain.ReadyForConnections(5 * time.Second) {
		t.Fatal("plain server did not start")
	}
	t.Cleanup(plain.Shutdown)
	nc, err := nats.Connect(plain.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	store, err := filestore.Open(t.TempDir(), filestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rc, err := resolver.New(context.Background(), nc, resolver.Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	p, err := provision.New(provision.Config{Operator: op, Store: store, Resolver: rc, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := responder.New(context.Background(), nc, p, responder.Config{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })

	rep := provtest.Request(t, nc, "prov.account.create", `{"name":"acme"}`)
	if rep.Code != 504 {
		t.Fatalf("create with a silent resolver: %d %q, want 504", rep.Code, rep.Description)
	}
	// A server that did not answer may have stored it: the create is
	// taken back as a delete, which the reconciler finishes; its keys are
	// gone at once.
	if a, err := store.AccountByName(context.Background(), "acme"); err == nil {
		t.Errorf("a create that timed out left a live account %s", a.PublicKey)
	}
	all, err := store.Accounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.Live() || a.IdentitySeed != "" || len(a.SigningKeys) > 0 {
			t.Errorf("a create that timed out left %v with its keys", a)
		}
	}
}

func TestServerRestart(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Start(t)
	admin := env.Admin(t)
	provtest.Request(t, admin, "prov.account.create", `{"name":"before"}`)
	env.Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		m, err := admin.Request("prov.account.list", nil, time.Second)
		if err == nil && m.Header.Get("Nats-Service-Error-Code") == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service did not serve again after a server restart: %v %v", err, m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The push connection reconnects on its own; a push waits for it.
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"after"}`); r.Code != 0 {
		t.Fatalf("create after a server restart: %d %q", r.Code, r.Description)
	}
	list := provtest.Request(t, admin, "prov.account.list", `{}`)
	if accts := list.Body["accounts"].([]any); len(accts) != 2 {
		t.Errorf("after the restart account.list = %s", list.Raw)
	}
}

// TestNoTwoActiveUsersOfOneName races user creates of one name against
// each other and against a revoke of that name: at no point may two active
// users share it.
func TestNoTwoActiveUsersOfOneName(t *testing.T) {
	t.Parallel()
	h := newHarness(t, bootstrap.Options{})
	h.ok(t, "account.create", `{"name":"acme"}`)
	for i := range 5 {
		name := fmt.Sprintf("alice%d", i)
		h.ok(t, "user.create", map[string]string{"account": "acme", "name": name})
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h.admin.Request("prov.user.create", fmt.Appendf(nil, `{"account":"acme","name":%q}`, name), 30*time.Second)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.admin.Request("prov.user.revoke", fmt.Appendf(nil, `{"account":"acme","user":%q}`, name), 30*time.Second)
		}()
		wg.Wait()
		active := 0
		for _, x := range h.ok(t, "user.list", `{"account":"acme"}`)["users"].([]any) {
			if u := x.(map[string]any); u["name"] == name && u["revoked"] == false {
				active++
			}
		}
		if active > 1 {
			t.Fatalf("round %d: %d active users named %s, want at most 1", i, active, name)
		}
	}
}

// TestStopAnswersEveryRequest stops the service while requests pour in:
// each gets an answer (a result, or 503 while shutting down), nothing
// panics.
func TestStopAnswersEveryRequest(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	inbox := admin.NewInbox() // admin.creds may subscribe to its own inbox prefix only
	replies, err := admin.SubscribeSync(inbox + ".*")
	if err != nil {
		t.Fatal(err)
	}
	if r := provtest.Request(t, admin, "prov.account.list", `{}`); r.Code != 0 {
		t.Fatalf("the service does not answer: %d %q", r.Code, r.Description)
	}
	const n = 300
	for i := range n {
		if i == n/3 {
			admin.Flush()
			go svc.Stop()
		}
		admin.PublishRequest("prov.account.list", fmt.Sprintf("%s.%d", inbox, i), nil)
	}
	admin.Flush()
	// Every request gets something back: its result, a 503 while the
	// service drains, or, once the endpoints are gone, the server's own
	// no-responders status.
	got := map[string]int{}
	for {
		m, err := replies.NextMsg(2 * time.Second)
		if errors.Is(err, nats.ErrNoResponders) {
			got["no responders"]++
			continue
		}
		if err != nil {
			break
		}
		got[m.Header.Get("Nats-Service-Error-Code")]++
	}
	total := 0
	for code, c := range got {
		total += c
		if code != "" && code != "503" && code != "no responders" {
			t.Errorf("%d replies with code %s", c, code)
		}
	}
	if total != n {
		t.Errorf("%d of %d requests got an answer: %v", total, n, got)
	}
	if err := svc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	t.Logf("answers: %v", got)
	// The stats count every request the instance answered, the 503s as
	// errors, and nothing is left in flight.
	st := svc.Responder.Stats()
	var list *micro.EndpointStats
	for _, e := range st.Endpoints {
		if e.Name == "account_list" {
			list = e
		}
	}
	switch {
	case list == nil:
		t.Fatalf("no account_list in the stats")
	case list.NumRequests != 1+got[""]+got["503"] || list.NumErrors != got["503"]:
		t.Errorf("stats: %d requests, %d errors; the instance answered %d results and %d 503s (and one list before)", list.NumRequests, list.NumErrors, got[""], got["503"])
	case got["503"] > 0 && !strings.HasPrefix(list.LastError, "503:"):
		t.Errorf("stats: last error %q, want the 503", list.LastError)
	case string(list.Data) != `{"in_flight":0,"pending":0}`:
		t.Errorf("stats after stop: %s", list.Data)
	}
}

// failing makes one operation of the real service fail with an error
// that is nobody's request's fault and holds internals.
type failing struct {
	*provision.Service
}

func (failing) CreateAccount(context.Context, api.CreateAccountRequest) (*api.AccountReply, error) {
	return nil, errors.New("write /var/lib/provisioner/store/journal: input/output error")
}

// TestInternalErrorHidesDetails: a failure that is nobody's request's fault
// is a 500 whose description points to the log instead of carrying
// internals; a closed store is a 503 (retry), with its details hidden too.
func TestInternalErrorHidesDetails(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	r2, err := responder.New(context.Background(), nc, failing{svc.Provision}, responder.Config{Prefix: "prov.failing", Name: "failing", Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Stop() })
	r := provtest.Request(t, admin, "prov.failing.account.create", `{"name":"acme"}`)
	if r.Code != 500 {
		t.Fatalf("create with a failing disk: %d %q, want 500", r.Code, r.Description)
	}
	if !strings.Contains(r.Description, "internal error (ref ") || strings.Contains(r.Description, "journal") {
		t.Errorf("500 description %q should point to the log and hide internals", r.Description)
	}
	if e, _ := r.Body["error"].(map[string]any); e == nil || e["code"] != float64(500) {
		t.Errorf("body %s", r.Raw)
	}

	if err := svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	r = provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`)
	if r.Code != 503 || strings.Contains(r.Description, "filestore") || !strings.Contains(r.Description, "ref ") {
		t.Fatalf("create with the store closed: %d %q, want 503 pointing to the log", r.Code, r.Description)
	}
}

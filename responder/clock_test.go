package responder_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/seal"
)

// TestAccountAheadOfTheClockIs503: an account whose current version was
// issued more than the service waits for in the future of its clock (a
// clock stepped back, another instance's clock ahead) cannot get a new
// version, which must be issued later. The change was answered 500
// "internal error", the "check the clocks" only in the log: it is a 503
// that says so, and nothing is changed.
func TestAccountAheadOfTheClockIs503(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatalf("account.create: %d %s", r.Code, r.Description)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}

	// The stored version, issued a minute ahead, as another instance whose
	// clock runs a minute fast would have signed it.
	ctx := context.Background()
	key, err := seal.Load(env.Config.SealKey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := filestore.Open(env.Config.StoreDir, filestore.Options{Seal: key})
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.AccountByName(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(a.JWT, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	claims["iat"] = time.Now().Add(time.Minute).Unix()
	raw, _ = json.Marshal(claims)
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(raw)
	sig, err := kp.Sign([]byte(signed))
	if err != nil {
		t.Fatal(err)
	}
	a.JWT = signed + "." + base64.RawURLEncoding.EncodeToString(sig)
	if _, err := st.UpdateAccount(ctx, a, a.Revision); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	env.Start(t)
	r := provtest.Request(t, admin, "prov.account.update", `{"account":"acme","description":"now"}`)
	if r.Code != api.CodeUnavailable || !strings.Contains(r.Description, "clock") {
		t.Errorf("update of an account issued a minute ahead of the clock: %d %q, want 503 naming the clocks", r.Code, r.Description)
	}
	got := provtest.Request(t, admin, "prov.account.get", `{"account":"acme"}`)
	if got.Code != 0 || strings.Contains(string(got.Raw), `"now"`) {
		t.Errorf("after the refused update account.get: %d %s, want the account unchanged", got.Code, got.Raw)
	}
}

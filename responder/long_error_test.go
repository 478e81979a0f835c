package responder_test

import (
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestLongErrorFitsMaxPayload: an error whose description echoes a long
// value of the request (an account name of 9,000 bytes) is carried twice
// by its reply, in the Nats-Service-Error header and in the body; on
// servers with a max_payload of 16 KiB that reply could not be published
// ("could not send reply: maximum payload exceeded"), and the caller
// waited out its whole timeout. The description is cut to fit, and the
// caller gets its 404 at once.
func TestLongErrorFitsMaxPayload(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	for _, name := range []string{strings.Repeat("n", 9000), strings.Repeat("<é>", 3000)} {
		began := time.Now()
		m, err := admin.Request("prov.account.get", []byte(`{"account":"`+name+`"}`), 5*time.Second)
		if err != nil {
			t.Fatalf("account.get of a %d-byte name: %v after %s, want a 404 at once", len(name), err, time.Since(began).Round(time.Millisecond))
		}
		desc := m.Header.Get("Nats-Service-Error")
		if code := m.Header.Get("Nats-Service-Error-Code"); code != "404" || !strings.Contains(desc, "cut") || !strings.Contains(string(m.Data), `"code":404`) {
			t.Errorf("account.get of a %d-byte name: %s %q, want 404, the description cut", len(name), code, desc)
		}
		if size := len(m.Data) + len(desc); size > int(admin.MaxPayload()) {
			t.Errorf("reply of %d bytes over max_payload", size)
		}
	}
	// A description that fits is whole.
	r := provtest.Request(t, admin, "prov.account.get", `{"account":"nope"}`)
	if r.Code != api.CodeNotFound || strings.Contains(r.Description, "cut") || !strings.Contains(r.Description, "nope") {
		t.Errorf("a short 404: %d %q", r.Code, r.Description)
	}
}

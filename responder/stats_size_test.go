package responder_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestStatsFitMaxPayload: each endpoint's last error is in $SRV.STATS, which
// carries them all, JSON-escaped ("<" is six bytes there). An error that
// echoes a long value of a request (an account name of 12,000 bytes) was
// kept whole in the stats, though its reply cuts it: on servers with a
// max_payload of 16 KiB the STATS answer could not be published, and
// `nats micro stats` got nothing from the instance until another error
// replaced it. The last error is cut to fit, and STATS answers.
func TestStatsFitMaxPayload(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	name := strings.Repeat("<é>", 3000)
	for _, op := range []string{"account.get", "account.delete", "user.list"} {
		if _, err := admin.Request("prov."+op, []byte(`{"account":"`+name+`"}`), 5*time.Second); err != nil {
			t.Fatalf("%s of a %d-byte name: %v", op, len(name), err)
		}
	}
	m, err := admin.Request("$SRV.STATS."+env.Config.ServiceName, nil, 3*time.Second)
	if err != nil {
		t.Fatalf("$SRV.STATS after errors that echo a %d-byte name: %v, want an answer", len(name), err)
	}
	var st micro.Stats
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	get := endpointOf(t, st, "account_get")
	if get.NumErrors != 1 || !strings.HasPrefix(get.LastError, "404:") || !strings.Contains(get.LastError, "cut") {
		t.Errorf("account_get: %d errors, last %.80q...; want the 404, cut", get.NumErrors, get.LastError)
	}
}

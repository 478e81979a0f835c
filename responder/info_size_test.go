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

// TestInfoFitsMaxPayload: $SRV.INFO carries every endpoint's request and
// reply JSON Schemas, about 32 KB for the thirteen endpoints. On servers
// with a max_payload of 16 KiB (which the service otherwise works with)
// the answer could not be published, and `nats micro info` got nothing.
// It now answers, the schemas left out and the service's metadata saying
// so.
func TestInfoFitsMaxPayload(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	for _, subj := range []string{"$SRV.INFO", "$SRV.INFO." + env.Config.ServiceName} {
		m, err := admin.Request(subj, nil, 3*time.Second)
		if err != nil {
			t.Fatalf("%s at max_payload 16384: %v, want an answer", subj, err)
		}
		var info micro.Info
		if err := json.Unmarshal(m.Data, &info); err != nil {
			t.Fatal(err)
		}
		if len(info.Endpoints) != 13 || info.Endpoints[0].Subject != "prov.account.create" {
			t.Errorf("%s: %d endpoints, want all 13", subj, len(info.Endpoints))
		}
		if !strings.Contains(info.Metadata["schemas_omitted"], "max_payload") {
			t.Errorf("%s: metadata %v, want schemas_omitted saying why", subj, info.Metadata)
		}
	}
	// The status endpoint still answers, and with room the schemas are in
	// INFO (TestMicroDiscovery).
	provtest.Request(t, admin, "prov.status", `{}`)
}

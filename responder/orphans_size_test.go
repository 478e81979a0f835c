package responder_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestManyOrphansFitTheReplies: a reconcile pass lists the accounts on the
// servers that the service does not manage, and prov.status repeats the
// last pass's list: with a few hundred such accounts at a small
// max_payload, prov.reconcile and every prov.status after it (what a
// health check asks) failed 500 "its reply would be over max_payload".
// Both answer, with as many orphans as fit and how many were left out.
func TestManyOrphansFitTheReplies(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.SetMaxPayload(t, 16384)
	env.Start(t)
	admin := env.Admin(t)
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := resolver.New(context.Background(), env.Connect(t, env.Init.ProvisionerCreds), resolver.Options{Timeout: 2 * time.Second, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	const strangers = 400 // 59 bytes each in a list: 23 KB
	for range strangers {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		c := jwt.NewAccountClaims(pub)
		token, err := c.Encode(op.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Update(context.Background(), token); err != nil {
			t.Fatal(err)
		}
	}
	var rep api.ReconcileReply
	r := provtest.Request(t, admin, "prov.reconcile", `{}`)
	if r.Code != 0 {
		t.Fatalf("prov.reconcile with %d orphans: %d %q, want it answered", strangers, r.Code, r.Description)
	}
	if err := json.Unmarshal(r.Raw, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Orphans)+rep.OrphansOmitted != strangers || rep.OrphansOmitted == 0 {
		t.Errorf("prov.reconcile: %d orphans listed, %d left out; want %d in all, some left out", len(rep.Orphans), rep.OrphansOmitted, strangers)
	}
	if s := provtest.Request(t, admin, "prov.status", `{}`); s.Code != 0 {
		t.Fatalf("prov.status after a pass that found %d orphans: %d %q, want it answered", strangers, s.Code, s.Description)
	}
}

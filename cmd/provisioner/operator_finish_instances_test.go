package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestFinishNamesTheInstanceOnTheOldKey: two instances on one bucket, one
// given operator_signing_key_next, the other left out of the rotation.
// prov.operator.rotate on the first re-signs every account, so every copy
// on the servers is the new key's and finish passed: it made the new key
// the config's while the other instance still signs with the old one, and
// its next change is unusable once the operator JWT drops that key.
// prov.status had no field for the key an instance signs with. Finish
// must ask every instance and name the one on the old key, and no status
// reply holds a seed.
func TestFinishNamesTheInstanceOnTheOldKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	res := env.Init
	nextKey := addSigningKey(t, res)
	env.Restart(t) // the server reads the operator JWT with both keys
	oldOp, err := provision.LoadOperator(env.Config.OperatorJWT, env.Config.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	oldOp.Signer.Wipe()
	newOp, err := provision.LoadOperator(env.Config.OperatorJWT, nextKey)
	if err != nil {
		t.Fatal(err)
	}
	newOp.Signer.Wipe()

	svcs := map[string]*service.Service{}
	for _, name := range []string{"inst-new", "inst-old"} {
		cfg := *env.Config
		cfg.Instance = name
		if name == "inst-new" {
			cfg.OperatorSigningKeyNext = nextKey
		}
		svc, err := service.Start(ctx, &cfg, provtest.Logger(t))
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { svc.Stop() })
		svcs[name] = svc
	}
	if _, err := svcs["inst-new"].Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := svcs["inst-new"].Provision.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil || len(rep.Failed) > 0 {
		t.Fatalf("rotate: %+v %v", rep, err)
	}
	// Each instance says the key it signs with, public only.
	admin := env.Admin(t)
	for name, want := range map[string]string{"inst-new": newOp.SignerKey, "inst-old": oldOp.SignerKey} {
		r := provtest.Request(t, admin, env.Config.SubjectPrefix+".status."+name, `{}`)
		if r.Code != 0 || r.Body["signing_key"] != want {
			t.Fatalf("status of %s: %d %s, want signing_key %s", name, r.Code, r.Raw, want)
		}
		if strings.Contains(string(r.Raw), `"SO`) || strings.Contains(string(r.Raw), "SOA") {
			t.Fatalf("status of %s holds a seed: %s", name, r.Raw)
		}
	}
	time.Sleep(500 * time.Millisecond)

	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(nextKey)
	fields["nats_url"] = env.Config.NATSURL
	raw, _ = json.MarshalIndent(fields, "", "  ")
	os.WriteFile(res.Config, raw, 0o644)
	out, _, err := runCmd(t, "operator", "finish", "--config", res.Config)
	if err == nil {
		t.Fatalf("finish passed while inst-old signs with the old key:\n%s", out)
	}
	for _, want := range []string{"inst-old", oldOp.SignerKey, "operator_signing_key_next"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("finish's refusal does not mention %q: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), "inst-new") {
		t.Errorf("finish's refusal names inst-new, which signs with the new key: %v", err)
	}
	if c, err := config.Load(res.Config); err != nil || c.OperatorSigningKeyNext == "" {
		t.Errorf("finish changed the config though it refused: %+v %v", c, err)
	}
}

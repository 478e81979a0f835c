package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestFinishSaysWhatKeepsTheOldKey: an instance whose config has no
// operator_signing_key_next goes on signing with the old key, and an
// orphan is never re-signed: finish's refusal said only "send
// prov.operator.rotate again", which then loops for ever. It must name
// the key each account is signed by and what keeps it so.
func TestFinishSaysWhatKeepsTheOldKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	cfg, err := config.Load(res.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATSURL = p.urls()
	svc, err := service.Start(ctx, cfg, provtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	admin, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p.ports[0]), nats.UserCredentials(res.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`)
	if r.Code != 0 {
		t.Fatalf("account.create: %d %q", r.Code, r.Description)
	}
	acme := r.Body["account"].(map[string]any)["public_key"].(string)
	oldOp, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	oldOp.Signer.Wipe()

	nextKey := addSigningKey(t, res)
	for i := range 2 {
		p.restart(t, i)
		p.routed(t, res.ProvisionerCreds)
	}
	time.Sleep(500 * time.Millisecond)
	// The running instance has no next key: it signs with the old one.
	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(nextKey)
	fields["nats_url"] = p.urls()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	os.WriteFile(res.Config, raw, 0o644)
	_, _, err = runCmd(t, "operator", "finish", "--config", res.Config)
	if err == nil {
		t.Fatal("finish with accounts signed by the old key passed")
	}
	for _, want := range []string{acme, oldOp.SignerKey, "operator_signing_key_next", "orphan"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("finish's refusal does not mention %q: %v", want, err)
		}
	}
}

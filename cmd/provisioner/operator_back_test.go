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

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestOperatorRotationServerBack: a server that was down through the
// rotation (and not known to the instance that rotated) comes back holding
// the system account, the service's own and the managed accounts signed by
// the old key. `operator finish` must refuse, naming what it holds, however
// the servers' answers are ordered; prov.operator.rotate sent again must
// re-sign what that server holds, after which finish succeeds.
func TestOperatorRotationServerBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	n1 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[0])
	cfg, svc, _, ok := servePair(ctx, t, res, p, n1)
	defer func() { svc.Stop() }()
	acme := ok("account.create", `{"name":"acme"}`)["account"].(map[string]any)["public_key"].(string)

	nextKey := addSigningKey(t, res)
	for i := range 2 {
		p.restart(t, i)
		p.routed(t, res.ProvisionerCreds)
	}
	// n2 goes down; the instance restarted meanwhile never knew it.
	p.srv[1].Stop()
	svc.Stop()
	cfg.NATSURL = n1
	cfg.OperatorSigningKeyNext = nextKey
	if svc, err = service.Start(ctx, cfg, provtest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	rot := ok("operator.rotate", `{}`)
	newKey := rot["signing_key"].(string)
	if f, _ := rot["failed"].([]any); len(f) != 0 {
		t.Fatalf("rotate failed for %v", f)
	}
	// n2 comes back, holding what the old key signed.
	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)

	sys, err := nats.Connect(n1, nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	// issuers returns the issuer of each server's copy of an account.
	issuers := func(pub string) []string {
		t.Helper()
		inbox := sys.NewInbox()
		sub, err := sys.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		sys.PublishRequest("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", inbox, nil)
		var out []string
		for len(out) < 2 {
			m, err := sub.NextMsg(2 * time.Second)
			if err != nil {
				t.Fatalf("LOOKUP %s: %d answers: %v", pub, len(out), err)
			}
			c, err := jwt.DecodeAccountClaims(string(m.Data))
			if err != nil {
				t.Fatalf("LOOKUP %s: %v", pub, err)
			}
			out = append(out, c.Issuer)
		}
		return out
	}
	oldOn := func(pub string) bool {
		for _, iss := range issuers(pub) {
			if iss != newKey {
				return true
			}
		}
		return false
	}
	if !oldOn(res.SystemAccount) {
		t.Fatal("precondition: n2 should hold the system account signed by the old key")
	}

	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(nextKey)
	fields["nats_url"] = n1
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(res.Config, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config); err == nil || !strings.Contains(err.Error(), res.SystemAccount) {
		t.Fatalf("finish while n2 holds the system account signed by the old key: %v, want a refusal naming %s", err, res.SystemAccount)
	}
	if after, err := config.Load(res.Config); err != nil || after.OperatorSigningKeyNext == "" {
		t.Fatalf("a refused finish changed the config: %v", err)
	}

	// Sent again, the rotation re-signs what n2 holds.
	ok("operator.rotate", `{}`)
	for _, pub := range []string{res.SystemAccount, res.ServiceAccount} {
		if oldOn(pub) {
			t.Errorf("after a second rotation a server still holds %s signed by %v, want %s", pub, issuers(pub), newKey)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for oldOn(acme) {
		if time.Now().After(deadline) {
			t.Fatalf("10s after n2 came back, it still holds acme signed by the old key")
		}
		ok("reconcile", `{}`)
	}
	if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1]); err != nil {
		t.Fatalf("finish once every server holds the new key's JWTs: %v", err)
	}
}

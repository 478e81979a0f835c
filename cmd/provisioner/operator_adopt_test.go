package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestAdoptedKeyUndoneForAServerThatDoesNotTrustIt: n2 was down when the
// instance started with operator_signing_key_next, and was never given
// the new operator JWT (step 2 missed it). The instance knew only n1,
// which trusts the new key, and switched to it at a reconcile pass,
// re-signing the accounts with it. When n2 came back, the reconciler
// pushed it those accounts signed by a key it does not trust: it took
// them (200) and every user of theirs was cut off there, for good. The
// instance must go back to the key every server trusts, and sign the
// accounts with it again.
func TestAdoptedKeyUndoneForAServerThatDoesNotTrustIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	// n2 runs with a copy of the operator JWT from before the rotation.
	oldJWT := filepath.Join(res.Dir, "operator-n2.jwt")
	raw, err := os.ReadFile(opJWT)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(oldJWT, raw, 0o644)
	conf, _ := os.ReadFile(p.confs[1])
	os.WriteFile(p.confs[1], []byte(strings.ReplaceAll(string(conf), opJWT, oldJWT)), 0o644)
	p.restart(t, 1)
	p.routed(t, res.ProvisionerCreds)

	n1 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[0])
	n2 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[1])
	cfg, svc, _, ok := servePair(ctx, t, res, p, n1)
	defer func() { svc.Stop() }()
	acme := ok("account.create", `{"name":"acme"}`)["account"].(map[string]any)["public_key"].(string)
	u := ok("user.create", `{"account":"acme","name":"alice"}`)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	os.WriteFile(creds, []byte(u["user"].(map[string]any)["creds"].(string)), 0o600)
	connectsTo := func(url string) error {
		// Not another server of the cluster that url's INFO names.
		nc, err := nats.Connect(url, nats.UserCredentials(creds), nats.NoReconnect(), nats.IgnoreDiscoveredServers())
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	}

	nextKey := addSigningKey(t, res)
	newKey, err := seedFilePublicKey(nextKey)
	if err != nil {
		t.Fatal(err)
	}
	// n1 gets the new operator JWT; n2, left with the old one, is down
	// when the instance restarts with the next key.
	p.restart(t, 0)
	p.srv[1].Stop()
	svc.Stop()
	cfg.NATSURL = n1
	cfg.OperatorSigningKeyNext = nextKey
	if svc, err = service.Start(ctx, cfg, provtest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	ok("reconcile", `{}`)
	ok("reconcile", `{}`)
	if err := connectsTo(n1); err != nil {
		t.Fatalf("alice on n1 after the switch: %v", err)
	}

	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)
	for range 5 {
		ok("reconcile", `{}`)
		time.Sleep(200 * time.Millisecond)
	}
	// n2 keeps the account it had loaded in memory; what it stored shows
	// once it restarts.
	p.restart(t, 1)
	p.routed(t, res.ProvisionerCreds)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok("reconcile", `{}`)
		err2 := connectsTo(n2)
		err1 := connectsTo(n1)
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(filepath.Join(res.Dir, "jwt-n2", acme+".jwt"))
			c, _ := jwt.DecodeAccountClaims(string(raw))
			t.Fatalf("n2, which does not trust the new key, came back: 10s after its next restart alice on n1: %v, on n2: %v (n2 holds acme signed by %s, the new key being %s)", err1, err2, c.Issuer, newKey)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

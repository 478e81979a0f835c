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

// TestSwitchBackResignsSystemAndServiceAccounts: prov.operator.rotate ran
// while n2, never given the new operator JWT, was down, and re-signed the
// system account and the service's own with the new key. When n2 came
// back, the instance switched back to the old key and its passes signed
// the managed accounts anew, but the system account and the service's own,
// which no pass pushes, stayed signed by the new key: n2 took them (from
// the resolver sync, which takes any newer copy) and, at its next
// restart, did not start at all ("Can't set system account: account
// validation failed"). The switch-back must sign them anew with the key
// every server trusts.
func TestSwitchBackResignsSystemAndServiceAccounts(t *testing.T) {
	t.Parallel()
	switchBack(t, false)
}

// TestRestartOnOldKeyResignsSystemAndServiceAccounts: the same, with the
// instance restarted once n2 is back: it starts on the old key and never
// switches, and must still sign those two accounts anew.
func TestRestartOnOldKeyResignsSystemAndServiceAccounts(t *testing.T) {
	t.Parallel()
	switchBack(t, true)
}

func switchBack(t *testing.T, restart bool) {
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
	// The resolvers sync every second, not every 2 minutes: each takes
	// the other's newer copies (by iat), whoever signed them.
	for i := range 2 {
		conf, _ := os.ReadFile(p.confs[i])
		os.WriteFile(p.confs[i], []byte(strings.ReplaceAll(string(conf), `interval: "2m"`, `interval: "1s"`)), 0o644)
	}
	conf, _ := os.ReadFile(p.confs[1])
	os.WriteFile(p.confs[1], []byte(strings.ReplaceAll(string(conf), opJWT, oldJWT)), 0o644)
	p.restart(t, 0)
	p.restart(t, 1)
	p.routed(t, res.ProvisionerCreds)

	n1 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[0])
	n2 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[1])
	cfg, svc, _, ok := servePair(ctx, t, res, p, n1)
	defer func() { svc.Stop() }()
	ok("account.create", `{"name":"acme"}`)

	nextKey := addSigningKey(t, res)
	newKey, err := seedFilePublicKey(nextKey)
	if err != nil {
		t.Fatal(err)
	}
	// n1 gets the new operator JWT; n2, left with the old one, is down
	// when the instance restarts with the next key and rotates.
	p.restart(t, 0)
	p.srv[1].Stop()
	svc.Stop()
	cfg.NATSURL = n1
	cfg.OperatorSigningKeyNext = nextKey
	if svc, err = service.Start(ctx, cfg, provtest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if f, _ := ok("operator.rotate", `{}`)["failed"].([]any); len(f) != 0 {
		t.Fatalf("rotate failed for %v", f)
	}

	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)
	if restart {
		svc.Stop()
		if svc, err = service.Start(ctx, cfg, provtest.Logger(t)); err != nil {
			t.Fatal(err)
		}
	}
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
	newOn := func(pub string) bool {
		for _, iss := range issuers(pub) {
			if iss == newKey {
				return true
			}
		}
		return false
	}
	// The passes switch back, and sign anew what the new key signed.
	deadline := time.Now().Add(10 * time.Second)
	for newOn(res.SystemAccount) || newOn(res.ServiceAccount) {
		if time.Now().After(deadline) {
			t.Errorf("10s after n2, which does not trust %s, came back, a server holds the system account signed by %v and the service's own by %v", newKey, issuers(res.SystemAccount), issuers(res.ServiceAccount))
			break
		}
		ok("reconcile", `{}`)
		time.Sleep(300 * time.Millisecond)
	}

	// n2 stores the newer copies the sync brings, and what it stored is
	// what it loads at its next restart: wait until its resolver directory
	// holds n1's copy of each, signed by a key it trusts.
	stored := func(n int, pub string) string {
		raw, _ := os.ReadFile(filepath.Join(res.Dir, fmt.Sprintf("jwt-n%d", n), pub+".jwt"))
		return string(raw)
	}
	synced := func(pub string) bool {
		c, err := jwt.DecodeAccountClaims(stored(2, pub))
		return err == nil && c.Issuer != newKey && stored(1, pub) == stored(2, pub)
	}
	for deadline := time.Now().Add(10 * time.Second); !synced(res.SystemAccount) || !synced(res.ServiceAccount); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("10s on, n2 has not stored n1's copies signed by a key it trusts (system account synced: %v, the service's own: %v)", synced(res.SystemAccount), synced(res.ServiceAccount))
		}
	}
	p.restart(t, 1)
	p.routed(t, res.ProvisionerCreds)
	for _, c := range []struct{ name, creds, prefix string }{
		{"the service's own account", res.ServiceCreds, ""},
		{"the system account", res.ProvisionerCreds, bootstrap.ProvisionerInboxPrefix},
	} {
		opts := []nats.Option{nats.UserCredentials(c.creds), nats.NoReconnect(), nats.IgnoreDiscoveredServers()}
		if c.prefix != "" {
			opts = append(opts, nats.CustomInboxPrefix(c.prefix))
		}
		nc, err := nats.Connect(n2, opts...)
		if err != nil {
			t.Errorf("a user of %s on n2 after its restart: %v", c.name, err)
			continue
		}
		nc.Close()
	}
}

package main

import (
	"context"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provision"
)

// resolverBlock matches the resolver block of a rendered ServerConf.
var resolverBlock = regexp.MustCompile(`(?s)\nresolver: \{.*?\n\}`)

// TestAllSignedByWithCacheResolver: n1 runs a full resolver, n2 a cache
// resolver (as a leaf or edge server does), which answers LIST but never
// a LOOKUP. Every account is signed by the key in use, so `operator
// finish`'s check must pass. Each LOOKUP waited the resolver timeout for
// n2, and past a handful of accounts the check ran out of time and
// refused the finish.
func TestAllSignedByWithCacheResolver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	raw, err := os.ReadFile(p.confs[1])
	if err != nil {
		t.Fatal(err)
	}
	conf := resolverBlock.ReplaceAllLiteralString(string(raw), "\nresolver: { type: cache, dir: \""+t.TempDir()+"\", ttl: \"1h\", limit: 100 }")
	if conf == string(raw) {
		t.Fatal("no resolver block in n2's configuration")
	}
	if err := os.WriteFile(p.confs[1], []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p.restart(t, 1)
	p.routed(t, res.ProvisionerCreds)

	cfg, err := config.Load(res.Config)
	if err != nil {
		t.Fatal(err)
	}
	op, err := provision.LoadOperator(cfg.OperatorJWT, cfg.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	defer op.Signer.Wipe()
	nc, err := nats.Connect(p.urls(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for range 8 {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		c := jwt.NewAccountClaims(pub)
		c.Issuer = op.PublicKey
		token, err := c.Encode(op.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(token), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if _, _, err := allSignedBy(ctx, nc, op.SignerKey, nil); err != nil {
		t.Fatalf("allSignedBy after %s: %v; want every account found signed by the key in use", time.Since(start).Round(time.Millisecond), err)
	}
}

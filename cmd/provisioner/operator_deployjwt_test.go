package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/resolver"
)

// TestFinishRewritesDeployAccountJWTs: after `operator finish` the deploy
// directory's system-account.jwt and service-account.jwt, init's copies
// that README lists as "the system account, and the provisioner's own
// account", still held the JWTs the old key signed: a server configured
// from them later preloads accounts no server trusts once the old key is
// removed. finish must give them the re-signed JWTs, as the preloads.
func TestFinishRewritesDeployAccountJWTs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, p, _, keyFile, next := newKeyTrusted(t)
	nc, err := nats.Connect(p.urls(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rc, err := resolver.New(ctx, nc, resolver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The rotation, done by hand: both accounts re-signed by the new key
	// (the next second: a later iat) on both servers.
	want := map[string]string{}
	for _, pub := range []string{res.SystemAccount, res.ServiceAccount} {
		m, err := nc.Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(string(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(time.Unix(c.IssuedAt+1, 0)))
		token, err := c.Encode(next.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if pr, err := rc.Update(ctx, token); err != nil || len(pr) != 2 || !pr[0].Stored || !pr[1].Stored {
			t.Fatalf("push %s: %+v %v", pub, pr, err)
		}
		want[pub] = token
	}

	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(keyFile)
	fields["nats_url"] = p.urls()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(res.Config, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1]); err != nil {
		t.Fatal(err)
	}
	for name, pub := range map[string]string{bootstrap.SystemAccountJWTFile: res.SystemAccount, bootstrap.ServiceAccountJWTFile: res.ServiceAccount} {
		raw, err := os.ReadFile(filepath.Join(res.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		token, err := jwt.ParseDecoratedJWT(raw)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if c.Issuer != next.SignerKey || token != want[pub] {
			t.Errorf("after finish %s is signed by %s, not the re-signed JWT the new key %s signed", name, c.Issuer, next.SignerKey)
		}
		if st, _ := os.Stat(filepath.Join(res.Dir, name)); st.Mode().Perm() != 0o644 {
			t.Errorf("%s is %v after finish, want 0644", name, st.Mode().Perm())
		}
	}
}

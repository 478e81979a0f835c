package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/resolver"
)

// TestFinishPreloadsTheNewestCopy: every account is signed by the new key,
// but n2 was down while the service account got a newer version and while
// an account that a third server preloads was created, so n2 holds an
// older copy of the one and none of the other. Asked through n2, whose
// LOOKUP answer comes first, `operator finish` wrote the older copy into
// the preloads, and failed on the account n2 lacks with "look up account
// X: <nil>". Every preload must get the newest copy any server holds.
func TestFinishPreloadsTheNewestCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, p, opJWT, keyFile, next := newKeyTrusted(t)

	connect := func(url string) *nats.Conn {
		t.Helper()
		nc, err := nats.Connect(url, nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	n1 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[0])
	n2 := fmt.Sprintf("nats://127.0.0.1:%d", p.ports[1])
	// resign signs an account's current JWT with the new key (the next
	// second: a later iat) and pushes it to every server up.
	resign := func(nc *nats.Conn, c *jwt.AccountClaims) string {
		t.Helper()
		time.Sleep(time.Until(time.Unix(c.IssuedAt+1, 0)))
		token, err := c.Encode(next.Signer)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := resolver.New(ctx, nc, resolver.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		pr, err := rc.Update(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range pr {
			if !r.Stored {
				t.Fatalf("push %s: %+v", c.Subject, pr)
			}
		}
		return token
	}
	claims := func(nc *nats.Conn, pub string) *jwt.AccountClaims {
		t.Helper()
		m, err := nc.Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(string(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The rotation, done by hand: both servers hold both accounts signed
	// by the new key.
	both := connect(p.urls())
	sysJWT := resign(both, claims(both, res.SystemAccount))
	resign(both, claims(both, res.ServiceAccount))

	// n2 away: a newer service account, and an account n2 never gets.
	p.srv[1].Stop()
	only1 := connect(n1)
	c := claims(only1, res.ServiceAccount)
	c.Tags.Add("newer")
	serviceJWT := resign(only1, c)
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	extra, _ := kp.PublicKey()
	extraJWT := resign(only1, jwt.NewAccountClaims(extra))
	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)

	// A third server's config preloads that account too.
	conf3 := filepath.Join(res.Dir, "n3.conf")
	if err := os.WriteFile(conf3, bootstrap.ServerConf{
		Listen: "127.0.0.1:4333", ServerName: "n3", OperatorJWT: opJWT,
		SystemAccount: res.SystemAccount, SystemJWT: sysJWT,
		Preload:     []bootstrap.Preload{{Account: extra, JWT: "stale"}},
		ResolverDir: filepath.Join(res.Dir, "jwt-n3"), Limit: 1000,
	}.Render(), 0o644); err != nil {
		t.Fatal(err)
	}

	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(keyFile)
	fields["nats_url"] = n2
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(res.Config, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1], "--server-conf", conf3); err != nil {
		t.Fatalf("finish through n2, which holds an older service account and no copy of %s: %v", extra, err)
	}
	for _, conf := range []string{p.confs[0], p.confs[1], conf3} {
		raw, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{res.SystemAccount: sysJWT, res.ServiceAccount: serviceJWT}
		if conf == conf3 {
			want = map[string]string{res.SystemAccount: sysJWT, extra: extraJWT}
		}
		for _, m := range preloadEntry.FindAllStringSubmatch(string(raw), -1) {
			if w, ok := want[m[2]]; ok && m[3] != w {
				t.Errorf("%s preloads %s as an older copy, not the newest one", filepath.Base(conf), m[2])
			}
			delete(want, m[2])
		}
		if len(want) != 0 {
			t.Errorf("%s lacks preloads of %v", filepath.Base(conf), strings.Join(slices.Collect(maps.Keys(want)), ", "))
		}
	}
}

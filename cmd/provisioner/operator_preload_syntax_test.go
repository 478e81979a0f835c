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
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/resolver"
)

// TestFinishRefusesPreloadsItCannotRewrite: finish rewrote each
// --server-conf's resolver_preload with a regular expression that takes
// only `ACCOUNT: "JWT"`, while nats-server also reads `ACCOUNT = "JWT"`,
// single quotes, no quotes, a quoted key, and an entry in an included
// file. A preload written so was left as it was, signed by the old key,
// and finish passed and swapped the config's key: that server, restarted
// from an empty resolver directory after the old key's removal, loads an
// account no longer trusted. Finish must refuse, naming the file and the
// account, unless that preload already holds the current JWT.
func TestFinishRefusesPreloadsItCannotRewrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, p, _, keyFile, next := newKeyTrusted(t)
	nc, err := nats.Connect(p.urls(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The rotation, done by hand: both accounts re-signed by the new key
	// (the next second: a later iat) and pushed to both servers.
	resign := func(pub string) string {
		t.Helper()
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
				t.Fatalf("push %s: %+v", pub, pr)
			}
		}
		return token
	}
	resign(res.SystemAccount)
	serviceJWT := resign(res.ServiceAccount)

	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(keyFile)
	fields["nats_url"] = p.urls()
	cfgRaw, _ := json.MarshalIndent(fields, "", "  ")

	n2Raw, err := os.ReadFile(p.confs[1])
	if err != nil {
		t.Fatal(err)
	}
	n2 := string(n2Raw)
	m, err := conf.ParseFile(p.confs[1])
	if err != nil {
		t.Fatal(err)
	}
	oldJWT, _ := m["resolver_preload"].(map[string]any)[res.ServiceAccount].(string)
	entry := fmt.Sprintf("  %s: %q\n", res.ServiceAccount, oldJWT)
	if oldJWT == "" || !strings.Contains(n2, entry) {
		t.Fatalf("n2's config is not as the test expects:\n%s", n2)
	}
	svc := res.ServiceAccount
	dir := t.TempDir()
	syntaxes := []struct {
		name  string
		entry string
		ok    bool // already the current JWT: nothing to rewrite
	}{
		{"equals", fmt.Sprintf("  %s = %q\n", svc, oldJWT), false},
		{"single quotes", fmt.Sprintf("  %s: '%s'\n", svc, oldJWT), false},
		{"no quotes", fmt.Sprintf("  %s: %s\n", svc, oldJWT), false},
		{"quoted key", fmt.Sprintf("  %q: %q\n", svc, oldJWT), false},
		{"included", "  include ./svc-preload.conf\n", false},
		{"equals, current already", fmt.Sprintf("  %s = %q\n", svc, serviceJWT), true},
	}
	if err := os.WriteFile(filepath.Join(dir, "svc-preload.conf"), []byte(entry), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, s := range syntaxes {
		t.Run(s.name, func(t *testing.T) {
			file := filepath.Join(dir, fmt.Sprintf("n2-%d.conf", i))
			if err := os.WriteFile(file, []byte(strings.Replace(n2, entry, s.entry, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			m, err := conf.ParseFile(file)
			want := oldJWT
			if s.ok {
				want = serviceJWT
			}
			if err != nil || m["resolver_preload"].(map[string]any)[svc] != want {
				t.Fatalf("nats-server does not read the preload of %s from\n%s\n(%v)", svc, s.entry, err)
			}
			if err := os.WriteFile(res.Config, cfgRaw, 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", file)
			if s.ok {
				if err != nil {
					t.Fatalf("finish with a preload already current: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), svc) {
				t.Fatalf("finish with the preload of %s written so (%s): %v; want a refusal naming %s and the account\n%s", svc, s.name, err, file, out)
			}
			cfg, _ := os.ReadFile(res.Config)
			if !strings.Contains(string(cfg), "operator_signing_key_next") {
				t.Errorf("finish refused, but swapped the config's key anyway")
			}
		})
	}
}

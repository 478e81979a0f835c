package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestAllSignedBySlowServer: zz-slow, a server with a full resolver (a
// system account user playing one), is slow to answer the first LOOKUP of
// `operator finish`'s check and answers every later one, holding account X
// signed by an old key (the real server holds X signed by the key in use).
// The number of answers the first LOOKUP got was taken as the number of
// full resolvers, so every later LOOKUP stopped at the real server's
// answer and the check passed, though zz-slow holds X signed by the old
// key. A known server that does not answer stops the check.
func TestAllSignedBySlowServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.Deployment(t, bootstrap.Options{})
	op, err := provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Signer.Wipe()
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	// X sorts after the system account and the service's own, so that
	// the first LOOKUP is not X's.
	var x string
	for x <= min(env.Init.SystemAccount, env.Init.ServiceAccount) {
		kp, err := nkeys.CreateAccount()
		if err != nil {
			t.Fatal(err)
		}
		x, _ = kp.PublicKey()
	}
	c := jwt.NewAccountClaims(x)
	cur, err := c.Encode(op.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(cur), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	oldKey, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	old, err := c.Encode(oldKey)
	if err != nil {
		t.Fatal(err)
	}

	player := env.Connect(t, slowPlayerCreds(t, env))
	const name, id = "zz-slow", "NZZSLOWSERVERFIRSTLOOKUP"
	server := fmt.Sprintf(`{"name":%q,"host":"127.0.0.1","id":%q}`, name, id)
	if _, err := player.Subscribe("$SYS.REQ.SERVER.PING.IDZ", func(m *nats.Msg) {
		_ = m.Respond([]byte(server))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := player.Subscribe("$SYS.REQ.CLAIMS.LIST", func(m *nats.Msg) {
		_ = m.Respond(fmt.Appendf(nil, `{"server":%s,"data":[%q]}`, server, x))
	}); err != nil {
		t.Fatal(err)
	}
	var lookups atomic.Int32
	if _, err := player.Subscribe("$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP", func(m *nats.Msg) {
		if lookups.Add(1) == 1 {
			return // slow: the answer comes after the check gave up waiting
		}
		if strings.Contains(m.Subject, x) {
			_ = m.Respond([]byte(old))
			return
		}
		_ = m.Respond(nil)
	}); err != nil {
		t.Fatal(err)
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}
	// Refused either way: naming X, or the LOOKUP zz-slow did not answer.
	if _, _, err := allSignedBy(ctx, nc, op.SignerKey, nil); err == nil {
		t.Fatalf("allSignedBy passed, though %s holds %s signed by the old key", name, x)
	} else if !strings.Contains(err.Error(), x) && !strings.Contains(err.Error(), "1 of the 2 servers") {
		t.Fatalf("allSignedBy: %v; want it to name %s, or the LOOKUP %s did not answer", err, x, name)
	}
}

// slowPlayerCreds writes the creds of a system account user allowed
// everything: it plays a server on the real bus.
func slowPlayerCreds(t *testing.T, env *provtest.Env) string {
	t.Helper()
	return provtest.SystemUserCreds(t, env.Dir, env.Init.SystemAccount, "player", nil)
}

// TestFinishDownServerNamesTheNextStep: a known server (zz-down, a system
// account user playing one) does not answer `operator finish`'s LIST. The
// refusal named it but told the operator to send prov.operator.rotate
// again, which re-signs nothing for a server that does not answer; it
// must say to bring the server back and run finish again.
func TestFinishDownServerNamesTheNextStep(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	player := env.Connect(t, slowPlayerCreds(t, env))
	const server = `{"name":"zz-down","host":"127.0.0.1","id":"NZZDOWNSERVERNOLIST"}`
	if _, err := player.Subscribe("$SYS.REQ.SERVER.PING.IDZ", func(m *nats.Msg) {
		_ = m.Respond([]byte(server))
	}); err != nil {
		t.Fatal(err)
	}
	if err := player.Flush(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(env.Init.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = fields["operator_signing_key"]
	fields["nats_url"] = env.Config.NATSURL
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(env.Init.Config, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := runCmd(t, "operator", "finish", "--config", env.Init.Config)
	if err == nil || !strings.Contains(err.Error(), "zz-down") || strings.Contains(err.Error(), "prov.operator.rotate") || !strings.Contains(err.Error(), "operator finish again") {
		t.Fatalf("finish while zz-down does not answer: %v; want a refusal naming zz-down that says to run operator finish again once it answers", err)
	}
}

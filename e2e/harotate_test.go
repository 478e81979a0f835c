package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// TestHAOperatorRotation: the operator signing-key rotation with two
// instances on one bucket. Once the server trusts the new key, each
// instance takes it up in its own reconcile pass (not only the one asked
// to rotate), so that accounts created through either are signed by it;
// prov.operator.rotate through one re-signs every account; and `operator
// finish` then finds every account on the server signed by the new key.
func TestHAOperatorRotation(t *testing.T) {
	t.Parallel()
	e := newHAEnv(t, haOptions{nodes: 1, config: map[string]any{"reconcile_interval": "1s"}})
	d := e.d
	issuer := func(pub string) string {
		t.Helper()
		got := e.lookup(pub)
		if len(got) != 1 {
			t.Fatalf("LOOKUP of %s: %d answers", pub, len(got))
		}
		c, err := jwt.DecodeAccountClaims(got[0])
		if err != nil {
			t.Fatal(err)
		}
		return c.Issuer
	}
	// Which instance made each account, from the change events.
	madeBy := map[string]string{}
	events := make(chan *nats.Msg, 256)
	sub, err := e.ops.ChanSubscribe("prov.events.account.created", events)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e.ops.Flush()
	create := func(name string) string {
		t.Helper()
		var acct accountReply
		e.call("prov.account.create", map[string]string{"name": name}, &acct)
		return acct.Account.PublicKey
	}
	drainEvents := func() {
		for {
			select {
			case m := <-events:
				var ev api.Event
				if err := json.Unmarshal(m.Data, &ev); err == nil {
					madeBy[ev.Account] = ev.Instance
				}
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}

	// 1. Offline: a new signing key in the operator JWT; both instances
	// are configured with it before the server trusts it.
	out, err := d.run(30*time.Second, d.provisioner, "operator", "add-signing-key",
		"--identity", filepath.Join(d.dir, bootstrap.OperatorIdentityKeyFile), "--operator-jwt", filepath.Join(d.dir, bootstrap.OperatorJWTFile))
	if err != nil {
		t.Fatalf("add-signing-key: %v\n%s", err, out)
	}
	keys, _ := filepath.Glob(filepath.Join(d.dir, "operator-signing-*.nk"))
	if len(keys) != 1 {
		t.Fatalf("add-signing-key wrote %v", keys)
	}
	seed, err := os.ReadFile(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := kp.PublicKey()
	kp.Wipe()
	e.config["operator_signing_key_next"] = filepath.Base(keys[0])
	p1, p2 := e.serve("rot-1"), e.serve("rot-2")
	e.waitInstances(2, 20*time.Second, p1, p2)
	before := create("before")
	oldKey := issuer(before)
	if oldKey == newKey {
		t.Fatal("an account was signed by the new key before the server trusted it")
	}

	// 2. The server restarts with the new operator JWT.
	if err := d.server.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	d.startServer()
	e.waitJetStream(60 * time.Second)
	e.waitInstances(2, 30*time.Second, p1, p2)

	// 3. Both instances take the new key up by themselves: accounts
	// created through each are signed by it.
	drainEvents()
	deadline := time.Now().Add(30 * time.Second)
	signedNew := map[string]bool{} // instance -> made an account signed by the new key
	for i := 0; len(signedNew) < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("30s after the server trusts the new key, only %v signed with it", signedNew)
		}
		pub := create(fmt.Sprintf("after-%d", i))
		drainEvents()
		if issuer(pub) == newKey {
			signedNew[madeBy[pub]] = true
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !signedNew["rot-1"] || !signedNew["rot-2"] {
		t.Fatalf("instances that signed with the new key: %v, want rot-1 and rot-2", signedNew)
	}

	// 4. Rotate through one instance: every account is re-signed.
	var rot api.RotateOperatorReply
	e.call("prov.operator.rotate", struct{}{}, &rot)
	if rot.SigningKey != newKey || rot.Previous != oldKey || len(rot.Failed) != 0 {
		t.Fatalf("rotate = %+v, want %s replacing %s, nothing failed", rot, newKey, oldKey)
	}
	if iss := issuer(before); iss != newKey {
		t.Fatalf("the account made before the rotation is signed by %s after it, want %s", iss, newKey)
	}

	// 5. finish finds every account signed by the new key.
	out, err = d.run(60*time.Second, d.provisioner, "operator", "finish", "--config", e.instanceConfig("rot-1"),
		"--server-conf", filepath.Join(d.dir, "nats-server.conf"))
	if err != nil {
		t.Fatalf("operator finish: %v\n%s", err, out)
	}
}

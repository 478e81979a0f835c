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
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// pair is two routed nats-servers of one deployment, each with its own
// resolver directory, restartable with the same files.
type pair struct {
	confs [2]string
	ports [2]int
	srv   [2]*natsembed.Server
}

// servePair starts the service of deployment res on the pair p, with a
// resolver timeout of 2 s, and connects an admin to url; ok sends a
// request as the admin, again while the service answers 503 or 504 (a
// server restarting, the admin reconnecting), and fails the test on any
// other answer. The caller stops svc (and may start another with cfg).
func servePair(ctx context.Context, t *testing.T, res *bootstrap.Result, p *pair, url string) (*config.Config, *service.Service, *nats.Conn, func(op string, body any) map[string]any) {
	t.Helper()
	cfg, err := config.Load(res.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATSURL = p.urls()
	cfg.ResolverTimeout = config.Duration(2 * time.Second)
	svc, err := service.Start(ctx, cfg, provtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := nats.Connect(url, nats.UserCredentials(res.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix), nats.MaxReconnects(-1))
	if err != nil {
		svc.Stop()
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	ok := func(op string, body any) map[string]any {
		t.Helper()
		for range 50 {
			r := provtest.Request(t, admin, "prov."+op, body)
			if r.Code == 0 {
				return r.Body
			}
			if r.Code != 503 && r.Code != 504 {
				t.Fatalf("%s: %d %q", op, r.Code, r.Description)
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s kept failing", op)
		return nil
	}
	return cfg, svc, admin, ok
}

// addSigningKey runs step 1 of an operator rotation on a deployment made
// by init (operator add-signing-key with its identity key and operator
// JWT) and returns the file of the one new signing seed it wrote.
// rotationStart inits a deployment with store and adds the next operator
// signing key, as a rotation's first step: it returns the deployment, the
// operator JWT's and identity key's paths, and the public keys of the
// signing key init wrote and of the one added.
func rotationStart(t *testing.T, store string) (res *bootstrap.Result, opJWT, identity, oldKey, nextKey string) {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	opJWT = filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	identity = filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
	return res, opJWT, identity, signerKey(t, res), addSigningKey(t, res)
}

// signerKey returns the public key of the operator signing key init wrote
// for res (the key a rotation replaces).
func signerKey(t *testing.T, res *bootstrap.Result) string {
	t.Helper()
	op, err := provision.LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	op.Signer.Wipe()
	return op.SignerKey
}

func addSigningKey(t *testing.T, res *bootstrap.Result) string {
	t.Helper()
	identity := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	if _, _, err := runCmd(t, "operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(res.Dir, "operator-signing-*.nk"))
	if len(keys) != 1 {
		t.Fatalf("add-signing-key wrote %v", keys)
	}
	return keys[0]
}

// newKeyTrusted makes a file deployment on a routed pair of servers, adds
// a new operator signing key (step 1 of the rotation: opJWT lists it,
// keyFile holds its seed) and restarts both servers with it (step 2): what
// the finish tests start from.
func newKeyTrusted(t *testing.T) (res *bootstrap.Result, p *pair, opJWT, keyFile string, next *provision.Operator) {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p = startPair(t, res)
	opJWT = filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	nextKey := addSigningKey(t, res)
	for i := range 2 {
		p.restart(t, i)
		p.routed(t, res.ProvisionerCreds)
	}
	if next, err = provision.LoadOperator(opJWT, nextKey); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(next.Signer.Wipe)
	return res, p, opJWT, nextKey, next
}

func startPair(t *testing.T, res *bootstrap.Result) *pair {
	t.Helper()
	read := func(name string) string {
		raw, err := os.ReadFile(filepath.Join(res.Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.ParseDecoratedJWT(raw)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	p := &pair{}
	routes := [2]int{provtest.FreePort(t), provtest.FreePort(t)}
	for i := range 2 {
		p.ports[i] = provtest.FreePort(t)
		conf := bootstrap.ServerConf{
			Listen:        fmt.Sprintf("127.0.0.1:%d", p.ports[i]),
			ServerName:    fmt.Sprintf("n%d", i+1),
			OperatorJWT:   filepath.Join(res.Dir, bootstrap.OperatorJWTFile),
			SystemAccount: res.SystemAccount,
			SystemJWT:     read(bootstrap.SystemAccountJWTFile),
			Preload:       []bootstrap.Preload{{Account: res.ServiceAccount, JWT: read(bootstrap.ServiceAccountJWTFile)}},
			ResolverDir:   filepath.Join(res.Dir, fmt.Sprintf("jwt-n%d", i+1)),
			AllowDelete:   true,
			Limit:         1000,
			Cluster: &bootstrap.ClusterConf{
				Name:   "rotation",
				Listen: fmt.Sprintf("127.0.0.1:%d", routes[i]),
				Routes: []string{fmt.Sprintf("nats-route://127.0.0.1:%d", routes[1-i])},
			},
		}
		p.confs[i] = filepath.Join(res.Dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(p.confs[i], conf.Render(), 0o644); err != nil {
			t.Fatal(err)
		}
		p.start(t, i)
	}
	return p
}

func (p *pair) start(t *testing.T, i int) {
	t.Helper()
	s, err := natsembed.Start(p.confs[i], natsembed.Options{Port: p.ports[i]})
	if err != nil {
		t.Fatalf("start n%d: %v", i+1, err)
	}
	p.srv[i] = s
	t.Cleanup(s.Stop)
}

// restart restarts one server with its files as they are now (a new
// operator JWT, a new preload).
func (p *pair) restart(t *testing.T, i int) {
	t.Helper()
	p.srv[i].Stop()
	p.start(t, i)
}

// routed waits until both servers answer a ping through one of them: the
// restarted one is routed again.
func (p *pair) routed(t *testing.T, creds string) {
	t.Helper()
	nc, err := nats.Connect(p.urls(), nats.UserCredentials(creds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		inbox := nc.NewInbox()
		sub, _ := nc.SubscribeSync(inbox)
		nc.PublishRequest("$SYS.REQ.SERVER.PING.IDZ", inbox, nil)
		n := 0
		for n < 2 { // two servers: no third answer to wait for
			if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
				break
			}
			n++
		}
		sub.Unsubscribe()
		if n == 2 {
			return
		}
	}
	t.Fatal("the two servers are not routed again within 10s")
}

func (p *pair) urls() string {
	return fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", p.ports[0], p.ports[1])
}

// TestOperatorRotation runs the whole operator signing-key rotation on a
// 2-server cluster, with users connected before, during and after it and
// each server restarted mid-way: add a key offline, roll the operator JWT
// out, rotate, finish, remove the old key offline, roll that out. Users
// keep working throughout, and new connections to each restarted server
// succeed.
func TestOperatorRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	cfg, svc, admin, ok := servePair(ctx, t, res, p, p.urls())
	defer func() { svc.Stop() }()
	ok("account.create", `{"name":"acme"}`)
	u := ok("user.create", `{"account":"acme","name":"alice"}`)
	creds := filepath.Join(t.TempDir(), "alice.creds")
	os.WriteFile(creds, []byte(u["user"].(map[string]any)["creds"].(string)), 0o600)
	var live [2]*nats.Conn
	for i := range 2 {
		// Only to n(i+1), also when reconnecting: nats.go moves on to the
		// servers the cluster announces, so a user refused by its
		// restarted server would be found connected to the other one.
		live[i], err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p.ports[i]), nats.UserCredentials(creds), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.IgnoreDiscoveredServers())
		if err != nil {
			t.Fatal(err)
		}
		defer live[i].Close()
	}
	// connectTo connects to n(i+1) and no other server: refused there,
	// nats.go's first connect goes on to the servers n(i+1)'s INFO
	// announces unless told not to, and would succeed on the other one.
	connectTo := func(i int) error {
		nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p.ports[i]), nats.UserCredentials(creds), nats.NoReconnect(), nats.IgnoreDiscoveredServers())
		if err != nil {
			return err
		}
		nc.Close()
		return nil
	}
	oldKey := svc.Operator.SignerKey
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	identity := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)

	// 1. Offline: a new signing key in the operator JWT.
	out, _, err := runCmd(t, "operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(res.Dir, "operator-signing-*.nk"))
	if len(keys) != 1 || !strings.Contains(out, "Added signing key") {
		t.Fatalf("add-signing-key wrote %v: %s", keys, out)
	}
	newKeyFile := keys[0]
	// Rotating before the servers run with it is refused, and changes
	// nothing.
	cfg.OperatorSigningKeyNext = newKeyFile
	svc.Stop()
	if svc, err = service.Start(ctx, cfg, provtest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	if r := provtest.Request(t, admin, "prov.operator.rotate", `{}`); r.Code != 409 || !strings.Contains(r.Description, "does not trust") {
		t.Fatalf("rotate before the servers have the key: %d %q, want 409", r.Code, r.Description)
	}
	// Finishing before anything is re-signed is refused too, and leaves
	// the config as it was.
	{
		raw, _ := os.ReadFile(res.Config)
		var fields map[string]any
		json.Unmarshal(raw, &fields)
		fields["operator_signing_key_next"] = filepath.Base(newKeyFile)
		fields["nats_url"] = p.urls()
		raw, _ = json.MarshalIndent(fields, "", "  ")
		os.WriteFile(res.Config, raw, 0o644)
		if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config); err == nil || !strings.Contains(err.Error(), "not signed by the new key") {
			t.Fatalf("finish before the rotation: %v, want a refusal naming the unsigned accounts", err)
		}
		if after, err := config.Load(res.Config); err != nil || after.OperatorSigningKeyNext != newKeyFile {
			t.Fatalf("a refused finish changed the config: %+v %v", after, err)
		}
	}

	// 2. Rolling restart with the new operator JWT; users keep working,
	// and new connections to each restarted server succeed.
	for i := range 2 {
		p.restart(t, i)
		if err := connectTo(i); err != nil {
			t.Fatalf("a new connection to n%d after its restart: %v", i+1, err)
		}
		p.routed(t, res.ProvisionerCreds)
	}

	// An instance takes up the new key by itself in a reconcile pass once
	// every server trusts it (the other instances of a deployment do
	// this, not only the one asked to rotate), and re-signs what the old
	// key signed: no prov.operator.rotate is needed for that.
	lookupIssuer := func(pub string) string {
		t.Helper()
		nc, err := nats.Connect(p.urls(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		m, err := nc.Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(string(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		return c.Issuer
	}
	seed, err := os.ReadFile(newKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	newKey, _ := kp.PublicKey()
	kp.Wipe()
	acmePub := ok("account.get", `{"account":"acme"}`)["account"].(map[string]any)["public_key"].(string)
	for deadline := time.Now().Add(15 * time.Second); lookupIssuer(acmePub) != newKey; time.Sleep(300 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("15s after every server trusts the new key %s, acme is still signed by %s", newKey, lookupIssuer(acmePub))
		}
		ok("reconcile", `{}`)
	}
	early := ok("account.create", `{"name":"early"}`)["account"].(map[string]any)["public_key"].(string)
	if iss := lookupIssuer(early); iss != newKey {
		t.Fatalf("an account created after the switch is signed by %s, want %s", iss, newKey)
	}

	// 3. Rotate: every account re-signed with the new key (again: it is
	// resumable), and the reply names the key it replaced.
	var rot api.RotateOperatorReply
	body := ok("operator.rotate", `{}`)
	b, _ := json.Marshal(body)
	json.Unmarshal(b, &rot)
	if rot.Previous != oldKey || rot.SigningKey == oldKey || len(rot.Failed) != 0 || rot.Resigned != 4 || len(rot.Servers) != 2 {
		t.Fatalf("rotate = %+v", rot)
	}
	sys, err := nats.Connect(p.urls(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	acme := ok("account.get", `{"account":"acme"}`)["account"].(map[string]any)["public_key"].(string)
	for _, pub := range []string{acme, res.SystemAccount, res.ServiceAccount} {
		m, err := sys.Request("$SYS.REQ.ACCOUNT."+pub+".CLAIMS.LOOKUP", nil, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c, err := jwt.DecodeAccountClaims(string(m.Data))
		if err != nil || c.Issuer != rot.SigningKey {
			t.Errorf("account %s is signed by %s after the rotation, want %s (%v)", pub, c.Issuer, rot.SigningKey, err)
		}
	}
	ok("account.create", `{"name":"after"}`)

	// 4. Finish: the config names the new key, the preloads hold the
	// re-signed JWTs. The config file is what the running service read,
	// with operator_signing_key_next added.
	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = filepath.Base(newKeyFile)
	fields["nats_url"] = p.urls()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	os.WriteFile(res.Config, raw, 0o644)
	if _, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1]); err != nil {
		t.Fatal(err)
	}
	after, err := config.Load(res.Config)
	if err != nil {
		t.Fatal(err)
	}
	if after.OperatorSigningKey != newKeyFile || after.OperatorSigningKeyNext != "" {
		t.Fatalf("after finish the config signs with %s (next %q), want %s", after.OperatorSigningKey, after.OperatorSigningKeyNext, newKeyFile)
	}

	// 5. Offline: the old key out of the operator JWT; rolling restart.
	if _, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p.restart(t, i)
		if err := connectTo(i); err != nil {
			t.Fatalf("a new connection to n%d after the old key is gone: %v", i+1, err)
		}
	}
	svc.Stop()
	after.NATSURL = p.urls()
	if svc, err = service.Start(ctx, after, provtest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	ok("account.create", `{"name":"last"}`)
	ok("user.create", `{"account":"acme","name":"bob"}`)
	deadline := time.Now().Add(5 * time.Second)
	for !(live[0].IsConnected() && live[1].IsConnected()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for i, nc := range live {
		if !nc.IsConnected() {
			t.Errorf("the user connected to n%d before the rotation is not connected after it", i+1)
		}
	}
	if stats := live[0].Stats(); stats.Reconnects == 0 {
		t.Log("n1's user never had to reconnect")
	}
}

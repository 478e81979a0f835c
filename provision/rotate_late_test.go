package provision_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// TestRotateAsksAServerThatAnswersLate: two servers; node-b, on a slow
// route (its answers come about 600 ms after node-a's), still runs the old
// operator JWT, which does not list the new signing key. The resolver
// client, just started, knew only node-a: its first ping waits 150 ms of
// quiet after the last answer for servers it does not know. The rotation
// checked only the servers known, switched the signing key, and re-signed
// and pushed the system account and the service's own to node-b with a
// key it does not trust, which no reconcile pass signs back; it must ask
// every server, node-b too, and refuse (409, nothing changed).
func TestRotateAsksAServerThatAnswersLate(t *testing.T) {
	t.Parallel()
	svc, rc, op := lateServerDomain(t)
	ctx := context.Background()
	rep, err := svc.RotateOperator(ctx, api.RotateOperatorRequest{})
	if !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("rotation with node-b not trusting the new key: %+v, %v; want a refusal (409) naming node-b (the client knew %+v)", rep, err, rc.Servers())
	}
	checkOldKey(t, svc, op, "acme")
}

// TestPassSwitchesKeyOnlyOnceALateServerTrustsIt: as above, with the
// switch left to the first reconcile pass after the start, as an instance
// restarted with operator_signing_key_next does: it switched to the new key
// once node-a trusted it, without asking node-b.
func TestPassSwitchesKeyOnlyOnceALateServerTrustsIt(t *testing.T) {
	t.Parallel()
	svc, rc, op := lateServerDomain(t)
	if _, err := svc.Reconcile(context.Background(), api.ReconcileRequest{}); err != nil {
		t.Fatal(err)
	}
	checkOldKey(t, svc, op, "acme")
	if t.Failed() {
		t.Logf("the client knew %+v", rc.Servers())
	}
}

// checkOldKey creates an account and checks that op's signing key signed it.
func checkOldKey(t *testing.T, svc *provision.Service, op *provision.Operator, name string) {
	t.Helper()
	created, err := svc.CreateAccount(context.Background(), api.CreateAccountRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := jwt.DecodeAccountClaims(created.Account.JWT); err != nil || c.Issuer != op.SignerKey {
		t.Errorf("an account is signed by %s, want the old key %s while node-b does not trust the new one (%v)", c.Issuer, op.SignerKey, err)
	}
}

// lateServerDomain starts node-a, trusting the old and the new operator
// signing key, and node-b, on a slow route, trusting only the old one, and
// a service with the new key as operator_signing_key_next, whose resolver
// client has just started.
func lateServerDomain(t *testing.T) (*provision.Service, *resolver.Client, *provision.Operator) {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	// node-b keeps the operator JWT without the new key.
	opPath := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	raw, err := os.ReadFile(opPath)
	if err != nil {
		t.Fatal(err)
	}
	oldOp := filepath.Join(res.Dir, "operator-old.jwt")
	if err := os.WriteFile(oldOp, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	idRaw, err := os.ReadFile(filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	id, err := jwt.ParseDecoratedNKey(idRaw)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := nkeys.CreateOperator()
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	keyPath := filepath.Join(res.Dir, "operator-signing-next.nk")
	if err := os.WriteFile(keyPath, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	oc.SigningKeys.Add(pub)
	signed, err := oc.Encode(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(opPath, []byte(signed+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	start := func(name, operator string, routes []string) *natsembed.Server {
		conf := res.Server
		conf.ServerName, conf.Listen, conf.OperatorJWT = name, "127.0.0.1:-1", operator
		conf.ResolverDir, conf.JetStreamDir, conf.AllowDelete = filepath.Join(t.TempDir(), "jwt"), "", true
		conf.Cluster = &bootstrap.ClusterConf{Name: "test-cluster", Listen: "127.0.0.1:-1", Routes: routes}
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, conf.Render(), 0o600); err != nil {
			t.Fatal(err)
		}
		srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a := start("node-a", opPath, nil)
	link := provtest.SlowLink(t, a.ClusterAddr().String(), 300*time.Millisecond)
	b := start("node-b", oldOp, []string{"nats-route://" + link})
	deadline := time.Now().Add(10 * time.Second)
	for a.NumRoutes() < 1 || b.NumRoutes() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("node-a and node-b do not route to each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	nc, err := nats.Connect(a.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// node-b answers, late: the servers' interest has spread.
	deadline = time.Now().Add(10 * time.Second)
	for pingCount(t, nc, 2, 2*time.Second) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("node-b does not answer a ping")
		}
	}

	ctx := context.Background()
	rc, err := resolver.New(ctx, nc, resolver.Options{Timeout: 2 * time.Second, RefreshInterval: time.Minute, Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	op, err := provision.LoadOperator(opPath, filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := filestore.Open(filepath.Join(t.TempDir(), "store"), filestore.Options{Logger: provtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := provision.New(provision.Config{Operator: op, Store: st, Resolver: rc, Protected: []string{res.ServiceAccount}, Logger: provtest.Logger(t),
		NextOperator: func() (*provision.Operator, error) { return provision.LoadOperator(opPath, keyPath) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)

	return svc, rc, op
}

// pingCount asks the servers who they are and counts the answers that
// arrive within wait, up to want: it returns as soon as want have answered
// (the callers only ask whether that many did), rather than always waiting
// the whole of wait.
func pingCount(t *testing.T, nc *nats.Conn, want int, wait time.Duration) int {
	t.Helper()
	sub, err := nc.SubscribeSync(nc.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(resolver.SubjectServerPing, sub.Subject, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	end := time.Now().Add(wait)
	for n < want {
		if _, err := sub.NextMsg(time.Until(end)); err != nil {
			return n
		}
		n++
	}
	return n
}

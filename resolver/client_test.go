package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/resolver"
)

// operator loads the deployment's operator signing key the way the service
// does.
func operator(t *testing.T, dir string) *provision.Operator {
	t.Helper()
	op, err := provision.LoadOperator(filepath.Join(dir, bootstrap.OperatorJWTFile), filepath.Join(dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// identityKey reads the operator identity key that Init puts aside.
func identityKey(t *testing.T, dir string) nkeys.KeyPair {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, bootstrap.OperatorIdentityKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(raw))))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// newAccount returns a fresh account's public key and its JWT signed by
// signer.
func newAccount(t *testing.T, name string, signer nkeys.KeyPair) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	token, err := ac.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	return pub, token
}

// deleteToken is a signed request to delete accounts.
func deleteToken(t *testing.T, signer nkeys.KeyPair, accounts ...string) string {
	t.Helper()
	signerPub, _ := signer.PublicKey()
	gc := jwt.NewGenericClaims(signerPub)
	gc.Data["accounts"] = accounts
	token, err := gc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func newClient(t *testing.T, nc *nats.Conn, opts resolver.Options) *resolver.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := resolver.New(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSingleServer(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	c := newClient(t, nc, resolver.Options{Timeout: 2 * time.Second})
	op := operator(t, env.Init.Dir)
	ctx := context.Background()
	serverName := env.Server.Name()

	if n := c.Servers(); n != 1 {
		t.Fatalf("Servers() = %d, want 1", n)
	}

	pub, token := newAccount(t, "team", op.Signer)
	t.Run("update", func(t *testing.T) {
		res, err := c.Update(ctx, token)
		if err != nil {
			t.Fatalf("Update: %v (result %+v)", err, res)
		}
		if len(res) != 1 {
			t.Fatalf("%d replies, want 1: %+v", len(res), res)
		}
		r := res[0]
		if r.Code != 200 || r.Message != "jwt updated" || !r.Stored || !r.Answered {
			t.Errorf("reply = %+v, want 200 \"jwt updated\", stored, answered", r)
		}
		if r.Server != serverName || r.ServerID != env.Server.ID() {
			t.Errorf("reply from %s (%s), want %s (%s)", r.Server, r.ServerID, serverName, env.Server.ID())
		}
		if res.Stored() != 1 {
			t.Errorf("Stored() = %d, want 1", res.Stored())
		}
	})

	t.Run("lookup", func(t *testing.T) {
		got, err := c.Lookup(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if got != token {
			t.Errorf("Lookup returned %q, want the pushed JWT", got)
		}
	})

	t.Run("update again", func(t *testing.T) {
		ac, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		ac.Tags.Add("v2")
		newer, err := ac.Encode(op.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Update(ctx, newer); err != nil {
			t.Fatal(err)
		}
		got, err := c.Lookup(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if got != newer {
			t.Error("Lookup does not return the newer JWT")
		}
	})

	t.Run("identity-signed JWT refused under strict signing", func(t *testing.T) {
		idPub, idToken := newAccount(t, "by-identity", identityKey(t, env.Init.Dir))
		res, err := c.Update(ctx, idToken)
		if !errors.Is(err, resolver.ErrRefused) {
			t.Fatalf("Update: %v, want ErrRefused (result %+v)", err, res)
		}
		var re *resolver.RefusedError
		if !errors.As(err, &re) {
			t.Fatalf("error %T is not a *RefusedError", err)
		}
		if len(re.Result) != 1 {
			t.Fatalf("refusal has %d replies, want 1: %+v", len(re.Result), re.Result)
		}
		r := re.Result[0]
		if !r.Answered || r.Stored || r.Code == 200 || r.Message == "" {
			t.Errorf("reply = %+v, want an answered refusal with the server's description", r)
		}
		if r.Server != serverName {
			t.Errorf("refusal from %q, want %q", r.Server, serverName)
		}
		// The reason carries the server's own description.
		if !strings.Contains(re.Reason, r.Message) || !strings.Contains(err.Error(), r.Message) {
			t.Errorf("reason %q does not carry the server's description %q", re.Reason, r.Message)
		}
		if len(res) != 1 || res[0] != r {
			t.Errorf("returned result %+v differs from the error's %+v", res, re.Result)
		}
		if got, _ := c.Lookup(ctx, idPub); got == idToken {
			t.Error("the refused JWT is served by the resolver")
		}
	})

	t.Run("garbage refused", func(t *testing.T) {
		_, err := c.Update(ctx, "not a jwt")
		if !errors.Is(err, resolver.ErrRefused) {
			t.Fatalf("Update of garbage: %v, want ErrRefused", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		res, err := c.Delete(ctx, deleteToken(t, op.Signer, pub))
		if err != nil {
			t.Fatalf("Delete: %v (result %+v)", err, res)
		}
		if len(res) != 1 || res.Stored() != 1 {
			t.Fatalf("result %+v, want one stored reply", res)
		}
		if r := res[0]; r.Code != 200 || !strings.HasPrefix(r.Message, "deleted") {
			t.Errorf("reply = %+v, want 200 \"deleted ...\"", r)
		}
		if got, _ := c.Lookup(ctx, pub); got == token || strings.HasPrefix(got, "eyJ") {
			t.Errorf("the deleted account is still served: %q", got)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, tok := newAccount(t, "cancelled", op.Signer)
		// The answer may have arrived already; if not, it is a timeout
		// that says why.
		if _, err := c.Update(cctx, tok); err != nil && !(errors.Is(err, resolver.ErrTimeout) && errors.Is(err, context.Canceled)) {
			t.Fatalf("Update with a cancelled context: %v, want nil or ErrTimeout wrapping context.Canceled", err)
		}
	})
}

// clusterNode is one server of a test cluster.
type clusterNode struct {
	name string
	srv  *natsembed.Server
}

// startCluster starts two routed servers of the deployment in dir, each with
// its own resolver directory.
func startCluster(t *testing.T, res *bootstrap.Result) [2]clusterNode {
	t.Helper()
	sysJWT, err := os.ReadFile(filepath.Join(res.Dir, bootstrap.SystemAccountJWTFile))
	if err != nil {
		t.Fatal(err)
	}
	sysToken, err := jwt.ParseDecoratedJWT(sysJWT)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name, routes string) *natsembed.Server {
		conf := bootstrap.ServerConf{
			Listen:        "127.0.0.1:-1",
			ServerName:    name,
			OperatorJWT:   filepath.Join(res.Dir, bootstrap.OperatorJWTFile),
			SystemAccount: res.SystemAccount,
			SystemJWT:     sysToken,
			ResolverDir:   filepath.Join(t.TempDir(), "jwt"),
			AllowDelete:   true,
			Limit:         1000,
		}
		text := string(conf.Render()) + fmt.Sprintf("\ncluster {\n  name: \"test-cluster\"\n  listen: \"127.0.0.1:-1\"\n  routes: [%s]\n}\n", routes)
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		srv, err := natsembed.Start(path, natsembed.Options{Port: -1})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(srv.Stop)
		return srv
	}
	a := start("node-a", "")
	b := start("node-b", fmt.Sprintf("%q", "nats-route://"+a.ClusterAddr().String()))
	deadline := time.Now().Add(10 * time.Second)
	for a.NumRoutes() == 0 || b.NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("servers not routed within 10s: %d, %d routes", a.NumRoutes(), b.NumRoutes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return [2]clusterNode{{"node-a", a}, {"node-b", b}}
}

func TestCluster(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, res)
	op := operator(t, res.Dir)

	// Connect to one server only.
	nc, err := nats.Connect(nodes[0].srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix), nats.DontRandomize(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := newClient(t, nc, resolver.Options{Timeout: 3 * time.Second, RefreshInterval: 100 * time.Millisecond})

	// The server list comes from PING.IDZ; the second server answers once
	// the route carries the system account's interest.
	deadline := time.Now().Add(5 * time.Second)
	for c.Servers() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Servers() = %d after 5s, want 2", c.Servers())
		}
		time.Sleep(50 * time.Millisecond)
	}

	ctx := context.Background()
	pub, token := newAccount(t, "clustered", op.Signer)
	start := time.Now()
	result, err := c.Update(ctx, token)
	if err != nil {
		t.Fatalf("Update: %v (result %+v)", err, result)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Update took %s: it waited for the timeout instead of the last reply", took)
	}
	if len(result) != 2 {
		t.Fatalf("%d replies, want one per server: %+v", len(result), result)
	}
	if result.Stored() != 2 {
		t.Errorf("Stored() = %d, want 2: %+v", result.Stored(), result)
	}
	for i, r := range result {
		// The result is sorted by server name.
		if r.Server != nodes[i].name || r.ServerID != nodes[i].srv.ID() {
			t.Errorf("reply %d from %s (%s), want %s (%s)", i, r.Server, r.ServerID, nodes[i].name, nodes[i].srv.ID())
		}
		if r.Code != 200 || r.Message != "jwt updated" || !r.Stored || !r.Answered {
			t.Errorf("reply %d = %+v, want 200 \"jwt updated\", stored", i, r)
		}
	}
	if n := c.Servers(); n != 2 {
		t.Errorf("Servers() = %d after the push, want 2", n)
	}

	// Both servers serve the JWT to their own clients.
	for _, node := range nodes {
		nc2, err := nats.Connect(node.srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		m, err := nc2.Request(fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", pub), nil, 2*time.Second)
		nc2.Close()
		if err != nil {
			t.Fatalf("lookup on %s: %v", node.name, err)
		}
		if string(m.Data) != token {
			t.Errorf("%s serves %q, want the pushed JWT", node.name, m.Data)
		}
	}

	// A delete is answered by both as well.
	result, err = c.Delete(ctx, deleteToken(t, op.Signer, pub))
	if err != nil {
		t.Fatalf("Delete: %v (result %+v)", err, result)
	}
	if len(result) != 2 || result.Stored() != 2 {
		t.Errorf("Delete result %+v, want two stored replies", result)
	}
}

func TestTimeoutWithoutResolver(t *testing.T) {
	// A plain server, not in operator mode: nothing answers the claims API
	// in the client's account.
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	connect := func(t *testing.T) *nats.Conn {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}

	const timeout = 300 * time.Millisecond
	kp, _ := nkeys.CreateOperator()
	_, token := newAccount(t, "nobody", kp)
	del := deleteToken(t, kp, "A")

	type call func(*resolver.Client) (resolver.Result, error)
	calls := []struct {
		name string
		call call
	}{
		{"update", func(c *resolver.Client) (resolver.Result, error) { return c.Update(context.Background(), token) }},
		{"delete", func(c *resolver.Client) (resolver.Result, error) { return c.Delete(context.Background(), del) }},
	}

	t.Run("nobody listens", func(t *testing.T) {
		// The server's no-responders status ends the wait at once.
		c := newClient(t, connect(t), resolver.Options{Timeout: timeout})
		if n := c.Servers(); n != 0 {
			t.Errorf("Servers() = %d, want 0", n)
		}
		for _, tc := range calls {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				res, err := tc.call(c)
				// Nothing received it, so nothing can have changed.
				if !errors.Is(err, resolver.ErrNotSent) {
					t.Fatalf("error %v, want ErrNotSent (result %+v)", err, res)
				}
				if errors.Is(err, resolver.ErrRefused) {
					t.Errorf("no responders matches ErrRefused: %v", err)
				}
				if len(res) != 0 {
					t.Errorf("result %+v, want no replies", res)
				}
				if took := time.Since(start); took > 5*timeout {
					t.Errorf("took %s with a %s timeout", took, timeout)
				}
			})
		}
		t.Run("lookup", func(t *testing.T) {
			if _, err := c.Lookup(context.Background(), "ANYTHING"); !errors.Is(err, resolver.ErrTimeout) {
				t.Fatalf("Lookup: %v, want ErrTimeout", err)
			}
		})
	})

	t.Run("silent listener", func(t *testing.T) {
		// Something takes the requests but never answers: the client
		// waits for its timeout, then gives up.
		silent := connect(t)
		for _, subj := range []string{resolver.SubjectClaimsUpdate, resolver.SubjectClaimsDelete} {
			if _, err := silent.Subscribe(subj, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
		}
		if err := silent.Flush(); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, connect(t), resolver.Options{Timeout: timeout})
		for _, tc := range calls {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				res, err := tc.call(c)
				took := time.Since(start)
				if !errors.Is(err, resolver.ErrTimeout) {
					t.Fatalf("error %v, want ErrTimeout (result %+v)", err, res)
				}
				if errors.Is(err, resolver.ErrRefused) {
					t.Errorf("a timeout matches ErrRefused: %v", err)
				}
				if took < timeout || took > 5*timeout {
					t.Errorf("took %s with a %s timeout", took, timeout)
				}
			})
		}
	})
}

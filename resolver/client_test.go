package resolver_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
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

	servers := c.Servers()
	if len(servers) != 1 || servers[0].Name != serverName || servers[0].ID != env.Server.ID() || !servers[0].Up {
		t.Fatalf("Servers() = %+v, want %s (%s) up", servers, serverName, env.Server.ID())
	}
	if since := time.Since(servers[0].LastSeen); since < 0 || since > 10*time.Second {
		t.Errorf("LastSeen %s ago, want just now", since)
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

	t.Run("lookup all, list, operators", func(t *testing.T) {
		all, err := c.LookupAll(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || all[0] != token {
			t.Errorf("LookupAll = %q, want the pushed JWT once", all)
		}
		list, err := c.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || !slices.Contains(list[serverName], pub) {
			t.Errorf("List = %v, want %s holding %s", list, serverName, pub)
		}
		ops, err := c.Operators(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{env.Init.Operator, env.Init.OperatorSigning}; len(ops) != 1 || !containsAll(ops[serverName], want...) {
			t.Errorf("Operators = %v, want %s trusting %v", ops, serverName, want)
		}
	})

	t.Run("lookup of an account nobody holds", func(t *testing.T) {
		// The server answers with an empty message: an answer, not an error.
		unknown, _ := newAccount(t, "unknown", op.Signer)
		got, err := c.Lookup(ctx, unknown)
		if err != nil || got != "" {
			t.Errorf("Lookup = %q, %v; want \"\", nil", got, err)
		}
		all, err := c.LookupAll(ctx, unknown)
		if err != nil || len(all) != 1 || all[0] != "" {
			t.Errorf("LookupAll = %q, %v; want one \"\"", all, err)
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
		if !errors.Is(err, provision.ErrRefused) {
			t.Fatalf("Update: %v, want ErrRefused (result %+v)", err, res)
		}
		var re *provision.RefusedError
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
		if !errors.Is(err, provision.ErrRefused) {
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
		cpub, tok := newAccount(t, "cancelled", op.Signer)
		// A push whose context is done is not sent: nothing can have
		// changed, and the error says so.
		_, err := c.Update(cctx, tok)
		if !errors.Is(err, provision.ErrNotSent) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Update with a cancelled context: %v, want ErrNotSent wrapping context.Canceled", err)
		}
		if got, err := c.Lookup(ctx, cpub); err != nil || got != "" {
			t.Errorf("after a push that was not sent the server holds %q (%v)", got, err)
		}
	})

	t.Run("closed client", func(t *testing.T) {
		c2, err := resolver.New(ctx, nc, resolver.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c2.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, ok := <-c2.Joined(); ok {
			t.Error("Joined is not closed after Close")
		}
		_, tok := newAccount(t, "after-close", op.Signer)
		if _, err := c2.Update(ctx, tok); !errors.Is(err, provision.ErrNotSent) {
			t.Errorf("Update after Close: %v, want ErrNotSent", err)
		}
	})
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
	pub, token := newAccount(t, "nobody", kp)
	del := deleteToken(t, kp, pub)

	// Each call returns how many replies or entries it got.
	calls := []struct {
		name string
		call func(context.Context, *resolver.Client) (int, error)
	}{
		{"update", func(ctx context.Context, c *resolver.Client) (int, error) {
			res, err := c.Update(ctx, token)
			return len(res), err
		}},
		{"delete", func(ctx context.Context, c *resolver.Client) (int, error) {
			res, err := c.Delete(ctx, del)
			return len(res), err
		}},
		{"lookup", func(ctx context.Context, c *resolver.Client) (int, error) {
			got, err := c.Lookup(ctx, pub)
			return len(got), err
		}},
		{"lookup all", func(ctx context.Context, c *resolver.Client) (int, error) {
			all, err := c.LookupAll(ctx, pub)
			return len(all), err
		}},
		{"list", func(ctx context.Context, c *resolver.Client) (int, error) {
			list, err := c.List(ctx)
			return len(list), err
		}},
		{"operators", func(ctx context.Context, c *resolver.Client) (int, error) {
			ops, err := c.Operators(ctx)
			return len(ops), err
		}},
	}

	t.Run("nobody listens", func(t *testing.T) {
		// The server's no-responders status ends the wait at once.
		c := newClient(t, connect(t), resolver.Options{Timeout: timeout})
		if s := c.Servers(); len(s) != 0 {
			t.Errorf("Servers() = %+v, want none", s)
		}
		for _, tc := range calls {
			t.Run(tc.name, func(t *testing.T) {
				start := time.Now()
				n, err := tc.call(context.Background(), c)
				// Nothing received it, so nothing can have changed.
				if !errors.Is(err, provision.ErrNotSent) {
					t.Fatalf("error %v, want ErrNotSent", err)
				}
				if errors.Is(err, provision.ErrRefused) || errors.Is(err, provision.ErrTimeout) {
					t.Errorf("no responders matches another error kind: %v", err)
				}
				if n != 0 {
					t.Errorf("%d results, want none", n)
				}
				if took := time.Since(start); took > timeout {
					t.Errorf("took %s with a %s timeout: no responders should end the wait", took, timeout)
				}
			})
		}
	})

	t.Run("silent listener", func(t *testing.T) {
		// Something takes the requests but never answers: the client
		// waits for its timeout, then gives up.
		silent := connect(t)
		for _, subj := range []string{resolver.SubjectClaimsUpdate, resolver.SubjectClaimsDelete, resolver.SubjectClaimsList, resolver.SubjectServerVarz, "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"} {
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
				n, err := tc.call(context.Background(), c)
				took := time.Since(start)
				if !errors.Is(err, provision.ErrTimeout) {
					t.Fatalf("error %v, want ErrTimeout", err)
				}
				if errors.Is(err, provision.ErrRefused) || errors.Is(err, provision.ErrNotSent) {
					t.Errorf("a timeout matches another error kind: %v", err)
				}
				if n != 0 {
					t.Errorf("%d results, want none", n)
				}
				if took < timeout || took > 5*timeout {
					t.Errorf("took %s with a %s timeout", took, timeout)
				}
			})
		}
		t.Run("cancelled while waiting", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), timeout/3)
			defer cancel()
			_, err := c.Update(ctx, token)
			if !errors.Is(err, provision.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Update: %v, want ErrTimeout wrapping the context's error", err)
			}
		})
	})
}

// containsAll reports whether have holds every one of want.
func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

package kvstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provtest"
)

// deployment is a real nats-server setup in operator mode with a full
// resolver and JetStream: an operator with a signing key, the system
// account, the service account (JetStream limits in its JWT), and an
// account without JetStream, all preloaded. It runs one server or a
// cluster of several.
type deployment struct {
	dir      string
	servers  []*natsembed.Server
	confs    []string
	svcCreds string // a user of the service account
	noJSCred string // a user of the account without JetStream
	sysCreds string // a user of the system account
}

// accountJWT makes an account JWT signed by the operator signing key; the
// account's users are signed by its signing key (the operator has strict
// signing key usage, as `provisioner init` makes it).
func accountJWT(t testing.TB, kp, signing, opSigning nkeys.KeyPair, name string, js bool) string {
	t.Helper()
	pub, _ := kp.PublicKey()
	spub, _ := signing.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(spub)
	if js {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{DiskStorage: 1 << 30, MemoryStorage: 64 << 20, Streams: -1, Consumer: -1}
	}
	tok, err := ac.Encode(opSigning)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// userCreds writes a creds file (0600) for a new user of the account,
// signed by the account's signing key.
func userCreds(t testing.TB, dir string, acct, signing nkeys.KeyPair, name string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.IssuerAccount, _ = acct.PublicKey()
	tok, err := uc.Encode(signing)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(p, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startDeployment starts n servers (a cluster when n > 1) and waits until
// JetStream answers for the service account.
func startDeployment(t testing.TB, n int) *deployment {
	t.Helper()
	dir := t.TempDir()
	mk := func(f func() (nkeys.KeyPair, error)) nkeys.KeyPair {
		kp, err := f()
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	op, opSigning := mk(nkeys.CreateOperator), mk(nkeys.CreateOperator)
	sys, svc, nojs := mk(nkeys.CreateAccount), mk(nkeys.CreateAccount), mk(nkeys.CreateAccount)
	sysSK, svcSK, nojsSK := mk(nkeys.CreateAccount), mk(nkeys.CreateAccount), mk(nkeys.CreateAccount)
	pub := func(kp nkeys.KeyPair) string { p, _ := kp.PublicKey(); return p }

	oc := jwt.NewOperatorClaims(pub(op))
	oc.Name = "kvstore-test"
	oc.SigningKeys.Add(pub(opSigning))
	oc.StrictSigningKeyUsage = true
	oc.SystemAccount = pub(sys)
	opJWT, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	opFile := filepath.Join(dir, "operator.jwt")
	if err := os.WriteFile(opFile, []byte(opJWT), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &deployment{dir: dir}
	d.svcCreds = userCreds(t, dir, svc, svcSK, "service")
	d.noJSCred = userCreds(t, dir, nojs, nojsSK, "nojs")
	d.sysCreds = userCreds(t, dir, sys, sysSK, "sys")
	preload := fmt.Sprintf("resolver_preload: {\n  %s: %q\n  %s: %q\n  %s: %q\n}\n",
		pub(sys), accountJWT(t, sys, sysSK, opSigning, "SYS", false),
		pub(svc), accountJWT(t, svc, svcSK, opSigning, "SERVICE", true),
		pub(nojs), accountJWT(t, nojs, nojsSK, opSigning, "NOJS", false))

	routes := make([]int, n)
	for i := range routes {
		routes[i] = provtest.FreePort(t)
	}
	for i := range n {
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: n%d\nlisten: \"127.0.0.1:-1\"\n", i+1)
		fmt.Fprintf(&b, "operator: %q\nsystem_account: %s\n", opFile, pub(sys))
		fmt.Fprintf(&b, "resolver: { type: full, dir: %q, allow_delete: true, interval: \"2m\" }\n", filepath.Join(dir, fmt.Sprintf("jwt%d", i+1)))
		b.WriteString(preload)
		fmt.Fprintf(&b, "jetstream: { store_dir: %q, max_memory_store: 256MB, max_file_store: 2GB }\n", filepath.Join(dir, fmt.Sprintf("js%d", i+1)))
		if n > 1 {
			var rs []string
			for _, p := range routes {
				rs = append(rs, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
			fmt.Fprintf(&b, "cluster: { name: c1, listen: \"127.0.0.1:%d\", routes: [%s] }\n", routes[i], strings.Join(rs, ", "))
		}
		conf := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		d.confs = append(d.confs, conf)
	}
	// The servers of a cluster start together: each waits for its routes
	// before its JetStream is ready.
	type started struct {
		i   int
		srv *natsembed.Server
		err error
	}
	ch := make(chan started, n)
	for i, conf := range d.confs {
		go func() {
			srv, err := natsembed.Start(conf, natsembed.Options{Port: -1, Logs: os.Getenv("KVSTORE_SERVER_LOGS") != ""})
			ch <- started{i, srv, err}
		}()
	}
	d.servers = make([]*natsembed.Server, n)
	for range n {
		s := <-ch
		if s.err != nil {
			t.Fatal(s.err)
		}
		d.servers[s.i] = s.srv
		t.Cleanup(s.srv.Stop)
	}
	nc := d.connect(t, d.svcCreds)
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream not ready for the service account: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc.Close()
	return d
}

// urls is every running server's client URL, for a connection that fails
// over.
func (d *deployment) urls() string {
	var us []string
	for _, s := range d.servers {
		if s != nil && s.Running() {
			us = append(us, s.ClientURL())
		}
	}
	return strings.Join(us, ",")
}

// connect connects with a creds file to the deployment; the connection
// reconnects forever and closes when the test ends.
func (d *deployment) connect(t testing.TB, creds string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(d.urls(), append([]nats.Option{
		nats.UserCredentials(creds), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

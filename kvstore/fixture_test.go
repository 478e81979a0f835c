package kvstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/testenv"
)

// deployment is a real nats-server setup in operator mode with a full
// resolver and JetStream: an operator with a signing key, the system
// account, the service account (JetStream limits in its JWT), and an
// account without JetStream, all preloaded. It runs one server or a
// cluster of several.
type deployment struct {
	dir      string
	nodes    []*node
	svcCreds string // a user of the service account
	noJSCred string // a user of the account without JetStream
	sysCreds string // a user of the system account
	// noJSWithJS is the JWT of the account without JetStream, given
	// JetStream limits, for a test to push.
	noJSWithJS string
	// svcFull is a JWT of the service account whose disk storage limit
	// is 64 KiB, for a test to push: its bucket then runs out of room.
	// svcJWT is the one it starts with, to push back.
	svcFull, svcJWT string
	// svcKeys are the service account's key, its signing key and the
	// operator signing key, for a test to make JWTs of it to push.
	svcKeys [3]nkeys.KeyPair
}

// accountJWT makes an account JWT signed by the operator signing key; the
// account's users are signed by its signing key (the operator has strict
// signing key usage, as `provisioner init` makes it). With js it may use
// 1 GiB of file storage.
func accountJWT(t testing.TB, kp, signing, opSigning nkeys.KeyPair, name string, js bool) string {
	t.Helper()
	var disk int64
	if js {
		disk = 1 << 30
	}
	return accountJWTLimited(t, kp, signing, opSigning, name, disk)
}

// accountJWTLimited is accountJWT with JetStream limited to disk bytes of
// file storage; 0 is no JetStream.
func accountJWTLimited(t testing.TB, kp, signing, opSigning nkeys.KeyPair, name string, disk int64) string {
	t.Helper()
	pub, _ := kp.PublicKey()
	spub, _ := signing.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(spub)
	if disk != 0 {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{DiskStorage: disk, MemoryStorage: 64 << 20, Streams: -1, Consumer: -1}
	}
	tok, err := ac.Encode(opSigning)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// accountJWTTiered is accountJWTLimited with its JetStream limits in a
// tier per replica count, R1 to R5, each of disk bytes.
func accountJWTTiered(t testing.TB, kp, signing, opSigning nkeys.KeyPair, name string, disk int64) string {
	t.Helper()
	pub, _ := kp.PublicKey()
	spub, _ := signing.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(spub)
	ac.Limits.JetStreamTieredLimits = jwt.JetStreamTieredLimits{}
	for r := 1; r <= 5; r++ {
		ac.Limits.JetStreamTieredLimits[fmt.Sprintf("R%d", r)] = jwt.JetStreamLimits{DiskStorage: disk, MemoryStorage: 8 << 20, Streams: -1, Consumer: -1}
	}
	tok, err := ac.Encode(opSigning)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// userCreds writes a creds file (0600) for a new user of the account,
// signed by the account's signing key, that may not publish to deny.
func userCreds(t testing.TB, dir string, acct, signing nkeys.KeyPair, name string, deny ...string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.IssuerAccount, _ = acct.PublicKey()
	uc.Pub.Deny.Add(deny...)
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

// node is one server of a deployment: embedded, or a nats-server
// process.
type node struct {
	name string
	url  string
	conf string
	emb  *natsembed.Server
	cmd  *exec.Cmd
}

// startDeployment starts n embedded servers (a cluster when n > 1) and
// waits until JetStream answers for the service account.
func startDeployment(t testing.TB, n int) *deployment {
	t.Helper()
	return start(t, n, false)
}

// startProcesses is startDeployment with nats-server processes, which a
// test can kill -9.
func startProcesses(t testing.TB, n int) *deployment {
	t.Helper()
	return start(t, n, true)
}

func start(t testing.TB, n int, processes bool) *deployment {
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
	d.noJSWithJS = accountJWT(t, nojs, nojsSK, opSigning, "NOJS", true)
	d.svcFull = accountJWTLimited(t, svc, svcSK, opSigning, "SERVICE", 64<<10)
	d.svcJWT = accountJWT(t, svc, svcSK, opSigning, "SERVICE", true)
	d.svcKeys = [3]nkeys.KeyPair{svc, svcSK, opSigning}
	preload := fmt.Sprintf("resolver_preload: {\n  %s: %q\n  %s: %q\n  %s: %q\n}\n",
		pub(sys), accountJWT(t, sys, sysSK, opSigning, "SYS", false),
		pub(svc), d.svcJWT,
		pub(nojs), accountJWT(t, nojs, nojsSK, opSigning, "NOJS", false))

	routes := make([]int, n)
	for i := range routes {
		routes[i] = testenv.FreePort(t)
	}
	for i := range n {
		port := testenv.FreePort(t)
		nd := &node{name: fmt.Sprintf("n%d", i+1), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: \"127.0.0.1:%d\"\n", nd.name, port)
		fmt.Fprintf(&b, "operator: %q\nsystem_account: %s\n", opFile, pub(sys))
		fmt.Fprintf(&b, "resolver: { type: full, dir: %q, allow_delete: true, interval: \"2m\" }\n", filepath.Join(dir, fmt.Sprintf("jwt%d", i+1)))
		b.WriteString(preload)
		fmt.Fprintf(&b, "jetstream: { store_dir: %q, max_memory_store: 256MB, max_file_store: 2GB }\n", filepath.Join(dir, fmt.Sprintf("js%d", i+1)))
		if n > 1 {
			var rs []string
			for _, p := range routes {
				rs = append(rs, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
			// Named for its first route port, unique among the clusters
			// of tests running in parallel: a node killed and restarted
			// on its port must not be joined by another test's routes
			// that came to use a freed port.
			fmt.Fprintf(&b, "cluster: { name: c%d, listen: \"127.0.0.1:%d\", routes: [%s] }\n", routes[0], routes[i], strings.Join(rs, ", "))
		}
		nd.conf = filepath.Join(dir, nd.name+".conf")
		if err := os.WriteFile(nd.conf, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		d.nodes = append(d.nodes, nd)
	}
	if processes {
		bin := testenv.Tool(t, "nats-server")
		for _, nd := range d.nodes {
			out, err := os.Create(filepath.Join(dir, nd.name+".log"))
			if err != nil {
				t.Fatal(err)
			}
			nd.cmd = exec.Command(bin, "-c", nd.conf)
			nd.cmd.Stdout, nd.cmd.Stderr = out, out
			if err := nd.cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = nd.cmd.Process.Kill()
				_ = nd.cmd.Wait()
				out.Close()
			})
		}
		for _, nd := range d.nodes {
			addr := strings.TrimPrefix(nd.url, "nats://")
			deadline := time.Now().Add(10 * time.Second)
			for {
				c, err := net.Dial("tcp", addr)
				if err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("nats-server %s does not listen on %s", nd.name, addr)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	} else {
		// The servers of a cluster start together: each waits for its
		// routes before its JetStream is ready.
		errs := make(chan error, n)
		for _, nd := range d.nodes {
			go func() {
				var err error
				nd.emb, err = natsembed.Start(nd.conf, natsembed.Options{Logs: os.Getenv("KVSTORE_SERVER_LOGS") != ""})
				errs <- err
			}()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for _, nd := range d.nodes {
			t.Cleanup(nd.emb.Stop)
		}
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

// urls is every server's client URL, for a connection that fails over.
func (d *deployment) urls() string {
	var us []string
	for _, nd := range d.nodes {
		us = append(us, nd.url)
	}
	return strings.Join(us, ",")
}

// restart starts a stopped embedded server again, with its data.
func (d *deployment) restart(t testing.TB, name string) {
	t.Helper()
	for _, nd := range d.nodes {
		if nd.name == name && nd.emb != nil {
			nd.emb.Stop()
			srv, err := natsembed.Start(nd.conf, natsembed.Options{})
			if err != nil {
				t.Fatal(err)
			}
			nd.emb = srv
			t.Cleanup(srv.Stop)
			return
		}
	}
	t.Fatalf("no embedded server %q", name)
}

// stop shuts the named server down: an embedded one cleanly (it hands its
// leaderships over first), a process with kill -9.
func (d *deployment) stop(t testing.TB, name string) {
	t.Helper()
	for _, nd := range d.nodes {
		if nd.name != name {
			continue
		}
		if nd.cmd != nil {
			if err := nd.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			return
		}
		nd.emb.Shutdown()
		return
	}
	t.Fatalf("no server %q", name)
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

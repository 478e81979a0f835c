// Package provtest starts real deployments for tests: a directory written
// by bootstrap.Init, an embedded nats-server in operator mode with a full
// resolver from its nats-server.conf, and the provisioner service against
// it. Nothing is mocked.
package provtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/service"
)

// Env is a deployment under test.
type Env struct {
	// Port is the server's client port, kept across restarts.
	Port   int
	Dir    string
	Init   *bootstrap.Result
	Server *natsembed.Server
	Config *config.Config
}

// Deployment writes a deployment into a temp dir with opts (Dir and Port
// are set here) and starts its nats-server; both go away when the test
// ends. Unless opts.Store says otherwise it is a file store deployment
// (bootstrap's default is JetStream); its server has JetStream on either
// way.
func Deployment(tb testing.TB, opts bootstrap.Options) *Env {
	tb.Helper()
	opts.Dir = tb.TempDir()
	if opts.Store == "" {
		opts.Store = bootstrap.StoreFile
	}
	res, err := bootstrap.Init(opts)
	if err != nil {
		tb.Fatalf("bootstrap: %v", err)
	}
	srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: -1})
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	tb.Cleanup(srv.Stop)
	cfg, err := config.Load(res.Config)
	if err != nil {
		tb.Fatalf("load config: %v", err)
	}
	cfg.NATSURL = srv.URL()
	cfg.ResolverTimeout = config.Duration(2 * time.Second)
	return &Env{Port: srv.Addr().(*net.TCPAddr).Port, Dir: res.Dir, Init: res, Server: srv, Config: cfg}
}

// JetStreamDeployment is Deployment with the JetStream KV store: its
// config has no store_dir, but service_creds, kv_bucket and seal_key.
func JetStreamDeployment(tb testing.TB, opts bootstrap.Options) *Env {
	tb.Helper()
	opts.Store = bootstrap.StoreJetStream
	return Deployment(tb, opts)
}

// Restart stops the nats-server, if it runs, and starts it again on the
// same port with the same data.
func (e *Env) Restart(tb testing.TB) {
	tb.Helper()
	e.Server.Stop()
	srv, err := natsembed.Start(e.Init.ServerConf, natsembed.Options{Port: e.Port})
	if err != nil {
		tb.Fatalf("restart nats-server: %v", err)
	}
	e.Server = srv
	tb.Cleanup(srv.Stop)
}

// SetMaxPayload restarts the nats-server with max_payload set to n bytes
// (its default is 1 MiB), for tests of what must fit in one message.
func (e *Env) SetMaxPayload(tb testing.TB, n int) {
	tb.Helper()
	f, err := os.OpenFile(e.Init.ServerConf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "\nmax_payload: %d\n", n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	e.Restart(tb)
}

// Start starts the provisioner against the deployment; it stops when the
// test ends, or earlier through the returned service's Stop.
func (e *Env) Start(tb testing.TB) *service.Service {
	tb.Helper()
	var level slog.Level
	_ = level.UnmarshalText([]byte(e.Config.LogLevel))
	if e.Config.LogLevel == "info" {
		level = slog.LevelDebug // tests want the whole story by default
	}
	svc, err := service.Start(context.Background(), e.Config, loggerAt(tb, level))
	if err != nil {
		tb.Fatalf("start provisioner: %v", err)
	}
	tb.Cleanup(func() { svc.Stop() })
	return svc
}

// Admin connects with the deployment's admin creds.
func (e *Env) Admin(tb testing.TB) *nats.Conn {
	tb.Helper()
	return e.Connect(tb, e.Init.AdminCreds)
}

// ServiceUser connects with the deployment's service creds, the user of
// the service's own account that may use the KV bucket.
func (e *Env) ServiceUser(tb testing.TB) *nats.Conn {
	tb.Helper()
	return e.Connect(tb, e.Init.ServiceCreds)
}

// BucketPut writes value over key in the deployment's KV bucket, as an
// operator with the service creds would by hand (nats kv put), and returns
// the revision it was stored at: damage, for tests of what the service
// makes of it.
func (e *Env) BucketPut(tb testing.TB, key string, value []byte) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(e.ServiceUser(tb))
	if err != nil {
		tb.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, e.Config.KVBucket)
	if err != nil {
		tb.Fatal(err)
	}
	rev, err := kv.Put(ctx, key, value)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

// Connect connects to the deployment's server with a creds file. With one
// of the creds files Init wrote, the connection uses that user's inbox
// prefix (the only inbox it may subscribe to); opts come after and may
// change it.
func (e *Env) Connect(tb testing.TB, creds string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	base := []nats.Option{nats.UserCredentials(creds), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}
	if prefix := e.InboxPrefix(creds); prefix != "" {
		base = append(base, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(e.Server.URL(), append(base, opts...)...)
	if err != nil {
		tb.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// InboxPrefix returns the inbox prefix of one of the creds files Init
// wrote, or "" for any other.
func (e *Env) InboxPrefix(creds string) string {
	switch creds {
	case e.Init.AdminCreds:
		return bootstrap.AdminInboxPrefix
	case e.Init.ProvisionerCreds:
		return bootstrap.ProvisionerInboxPrefix
	case e.Init.ServiceCreds:
		return bootstrap.ServiceInboxPrefix
	}
	return ""
}

// Reply is a decoded provisioning reply: the body, and the error code and
// description from the micro headers (0 and "" on success).
type Reply struct {
	Code        int
	Description string
	Body        map[string]any
	Raw         []byte
}

// Request sends a provisioning request with body (a JSON string, or any
// value to marshal) and decodes the reply.
func Request(tb testing.TB, nc *nats.Conn, subject string, body any) Reply {
	tb.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			tb.Fatalf("marshal request: %v", err)
		}
	}
	m, err := nc.Request(subject, data, 30*time.Second)
	if err != nil {
		tb.Fatalf("request %s: %v", subject, err)
	}
	r := Reply{Raw: m.Data}
	if c := m.Header.Get("Nats-Service-Error-Code"); c != "" {
		r.Code, _ = strconv.Atoi(c)
		r.Description = m.Header.Get("Nats-Service-Error")
	}
	if err := json.Unmarshal(m.Data, &r.Body); err != nil {
		tb.Fatalf("reply of %s is not a JSON object: %v: %s", subject, err, m.Data)
	}
	return r
}

// Logger returns a logger that writes everything to the test log.
func Logger(tb testing.TB) *slog.Logger { return loggerAt(tb, slog.LevelDebug) }

func loggerAt(tb testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: level}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(string(p))
	return len(p), nil
}

// ServiceAccountCreds writes creds of a new user name of the service's own
// account with perms (none: everything), signed by the account's signing
// key from the offline directory, as an operator would make them, and
// returns their path.
func (e *Env) ServiceAccountCreds(tb testing.TB, name string, perms jwt.Permissions) string {
	tb.Helper()
	return UserCreds(tb, filepath.Join(e.Dir, bootstrap.ServiceAccountSigningFile), e.Init.ServiceAccount, name, func(uc *jwt.UserClaims) { uc.Permissions = perms })
}

// SystemUserCreds writes creds of a new user name of the system account
// of the deployment in dir, signed by the system account's signing key
// Init puts aside, and returns their path. edit, when not nil, sets the
// user's claims (permissions, expiry); left alone, everything is allowed.
func SystemUserCreds(tb testing.TB, dir, systemAccount, name string, edit func(*jwt.UserClaims)) string {
	tb.Helper()
	return UserCreds(tb, filepath.Join(dir, bootstrap.SystemAccountSigningFile), systemAccount, name, edit)
}

// AuthErrors follows, as a system-account user, the servers' auth error
// events ($SYS.SERVER.<id>.CLIENT.AUTH.ERR), which carry what a refused
// client sent as its JWT, and returns a function that waits for the events
// until none has come for quiet (the server publishes one after it closes
// the connection) and returns their bodies.
func (e *Env) AuthErrors(tb testing.TB) func(quiet time.Duration) [][]byte {
	tb.Helper()
	nc := e.Connect(tb, SystemUserCreds(tb, e.Dir, e.Init.SystemAccount, "auth-error-watcher", nil))
	sub, err := nc.SubscribeSync("$SYS.SERVER.*.CLIENT.AUTH.ERR")
	if err != nil {
		tb.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		tb.Fatal(err)
	}
	return func(quiet time.Duration) [][]byte {
		var got [][]byte
		for {
			m, err := sub.NextMsg(quiet)
			if err != nil {
				return got
			}
			got = append(got, m.Data)
		}
	}
}

// UserCreds writes creds of a new user name of account, signed by the
// account signing key whose seed is in signingFile, edit (when not nil)
// setting its claims, and returns their path.
func UserCreds(tb testing.TB, signingFile, account, name string, edit func(*jwt.UserClaims)) string {
	tb.Helper()
	data, err := os.ReadFile(signingFile)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		tb.Fatal(err)
	}
	defer signer.Wipe()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatal(err)
	}
	defer ukp.Wipe()
	upub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.IssuerAccount = account
	if edit != nil {
		edit(uc)
	}
	token, err := uc.Encode(signer)
	if err != nil {
		tb.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// PushServiceAccount pushes the service's own account as init made it,
// changed by edit and signed by the operator signing key, and fails the
// test unless the server stores it. Each call starts from init's JWT.
func (e *Env) PushServiceAccount(tb testing.TB, edit func(*jwt.AccountClaims)) {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(e.Dir, bootstrap.ServiceAccountJWTFile))
	if err != nil {
		tb.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		tb.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		tb.Fatal(err)
	}
	edit(ac)
	seed, err := os.ReadFile(filepath.Join(e.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		tb.Fatal(err)
	}
	defer kp.Wipe()
	signed, err := ac.Encode(kp)
	if err != nil {
		tb.Fatal(err)
	}
	sys := e.Connect(tb, e.Init.ProvisionerCreds)
	defer sys.Close()
	m, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(signed), 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	if !strings.Contains(string(m.Data), `"code":200`) {
		tb.Fatalf("push of the changed service account: %s", m.Data)
	}
}

// EditOperatorJWT changes the operator JWT of the deployment in dir with
// edit and signs it again with the operator's identity key, as an operator
// does with nsc: the running servers keep the one they loaded until they
// are restarted.
func EditOperatorJWT(tb testing.TB, dir string, edit func(*jwt.OperatorClaims)) {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, bootstrap.OperatorIdentityKeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	id, err := jwt.ParseDecoratedNKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	opPath := filepath.Join(dir, bootstrap.OperatorJWTFile)
	raw, err = os.ReadFile(opPath)
	if err != nil {
		tb.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		tb.Fatal(err)
	}
	oc, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		tb.Fatal(err)
	}
	edit(oc)
	signed, err := oc.Encode(id)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(opPath, []byte(signed+"\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// NewOperatorKeyFile makes a new operator key and writes its seed, 0600,
// to name in dir; it returns the public key and the file's path.
func NewOperatorKeyFile(tb testing.TB, dir, name string) (pub, path string) {
	tb.Helper()
	kp, err := nkeys.CreateOperator()
	if err != nil {
		tb.Fatal(err)
	}
	pub, _ = kp.PublicKey()
	seed, _ := kp.Seed()
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		tb.Fatal(err)
	}
	return pub, path
}

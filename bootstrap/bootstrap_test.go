package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// allFiles are the files Init writes, relative to its directory.
var allFiles = []string{
	bootstrap.OperatorJWTFile, bootstrap.OperatorSigningKeyFile, bootstrap.SystemAccountJWTFile,
	bootstrap.ProvisionerCredsFile, bootstrap.AdminCredsFile, bootstrap.ServerConfFile,
	bootstrap.ContainerConfFile, bootstrap.ConfigFile,
	bootstrap.OperatorIdentityKeyFile, bootstrap.SystemAccountKeyFile, bootstrap.SystemAccountSigningFile,
}

var secretFiles = []string{
	bootstrap.OperatorSigningKeyFile, bootstrap.ProvisionerCredsFile, bootstrap.AdminCredsFile,
	bootstrap.OperatorIdentityKeyFile, bootstrap.SystemAccountKeyFile, bootstrap.SystemAccountSigningFile,
}

// snapshot lists every entry under dir with its mode and content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			v += " " + string(data)
		}
		out[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInitWritesTheFilesItReports(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	if !slices.Equal(env.Init.Files, allFiles) {
		t.Errorf("Result.Files = %v, want %v", env.Init.Files, allFiles)
	}
	for _, f := range allFiles {
		if _, err := os.Stat(filepath.Join(env.Dir, f)); err != nil {
			t.Errorf("Init did not write %s: %v", f, err)
		}
	}
}

func TestInitRefusesAnExistingDeployment(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	before := snapshot(t, env.Dir)
	if _, err := bootstrap.Init(bootstrap.Options{Dir: env.Dir}); err == nil {
		t.Fatal("Init into an initialised directory succeeded")
	}
	if after := snapshot(t, env.Dir); !maps.Equal(before, after) {
		t.Fatalf("the refused Init changed the directory:\nbefore %v\nafter  %v", keys(before), keys(after))
	}
}

// Any single one of the files, or the resolver or store dir, is enough for
// Init to refuse, before it writes anything.
func TestInitRefusesAnyExistingFile(t *testing.T) {
	for _, f := range append(slices.Clone(allFiles), bootstrap.ResolverDir, bootstrap.StoreDir) {
		t.Run(strings.ReplaceAll(f, "/", "_"), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("mine\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			_, err := bootstrap.Init(bootstrap.Options{Dir: dir})
			if err == nil {
				t.Fatalf("Init succeeded although %s exists", f)
			}
			if !strings.Contains(err.Error(), f) {
				t.Errorf("the error does not name %s: %v", f, err)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Fatalf("the refused Init changed the directory:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
		})
	}
}

func TestSecretFileModes(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	for _, f := range secretFiles {
		fi, err := os.Stat(filepath.Join(env.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ents, err := os.ReadDir(filepath.Join(env.Dir, bootstrap.OfflineDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s/%s has mode %v, want 0600", bootstrap.OfflineDir, e.Name(), fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(env.Dir, bootstrap.OfflineDir)); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", bootstrap.OfflineDir, fi.Mode().Perm())
	}
	for _, f := range allFiles {
		if slices.Contains(secretFiles, f) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(env.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if hasSeed(data) {
			t.Errorf("the public file %s contains a seed", f)
		}
	}
}

// hasSeed reports whether data holds anything that decodes as an nkey seed.
func hasSeed(data []byte) bool {
	for _, w := range strings.FieldsFunc(string(data), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		if len(w) == 58 && w[0] == 'S' {
			if _, err := nkeys.FromSeed([]byte(w)); err == nil {
				return true
			}
		}
	}
	return false
}

func readJWT(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return token
}

func readSeed(t *testing.T, path string) nkeys.KeyPair {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(data))
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	return kp
}

func pub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOperatorAndSystemAccount(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	res := env.Init

	oc, err := jwt.DecodeOperatorClaims(readJWT(t, filepath.Join(env.Dir, bootstrap.OperatorJWTFile)))
	if err != nil {
		t.Fatal(err)
	}
	if !oc.StrictSigningKeyUsage {
		t.Error("the operator does not have strict_signing_key_usage")
	}
	if oc.SystemAccount == "" || oc.SystemAccount != res.SystemAccount {
		t.Errorf("the operator's system account is %q, want %s", oc.SystemAccount, res.SystemAccount)
	}
	if oc.Subject != res.Operator || oc.Issuer != oc.Subject {
		t.Errorf("the operator JWT: subject %s issuer %s, want both %s (self-signed by the identity key)", oc.Subject, oc.Issuer, res.Operator)
	}
	if len(oc.SigningKeys) != 1 || !oc.SigningKeys.Contains(res.OperatorSigning) {
		t.Errorf("the operator's signing keys are %v, want [%s]", oc.SigningKeys, res.OperatorSigning)
	}
	if res.OperatorSigning == oc.Subject {
		t.Error("the operator's signing key is its identity key")
	}
	if got := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.OperatorSigningKeyFile))); got != res.OperatorSigning {
		t.Errorf("%s holds %s, want the signing key %s", bootstrap.OperatorSigningKeyFile, got, res.OperatorSigning)
	}
	if got := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.OperatorIdentityKeyFile))); got != res.Operator {
		t.Errorf("%s holds %s, want the operator %s", bootstrap.OperatorIdentityKeyFile, got, res.Operator)
	}

	ac, err := jwt.DecodeAccountClaims(readJWT(t, filepath.Join(env.Dir, bootstrap.SystemAccountJWTFile)))
	if err != nil {
		t.Fatal(err)
	}
	if ac.Subject != res.SystemAccount {
		t.Errorf("the system account JWT is for %s, want %s", ac.Subject, res.SystemAccount)
	}
	if ac.Issuer != res.OperatorSigning {
		t.Errorf("the system account JWT is issued by %s, want the operator signing key %s", ac.Issuer, res.OperatorSigning)
	}
	var vr jwt.ValidationResults
	ac.Validate(&vr)
	if errs := vr.Errors(); len(errs) > 0 {
		t.Errorf("the system account JWT does not validate: %v", errs)
	}
	if got := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.SystemAccountKeyFile))); got != res.SystemAccount {
		t.Errorf("%s holds %s, want %s", bootstrap.SystemAccountKeyFile, got, res.SystemAccount)
	}
	sysSigning := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.SystemAccountSigningFile)))
	if !ac.SigningKeys.Contains(sysSigning) || sysSigning == res.SystemAccount {
		t.Errorf("the system account's signing keys %v do not hold %s from %s", ac.SigningKeys, sysSigning, bootstrap.SystemAccountSigningFile)
	}

	// Both users belong to the system account and are signed by its
	// signing key, with the permissions Init advertises.
	for _, u := range []struct {
		file, pub string
		perms     jwt.Permissions
	}{
		{bootstrap.ProvisionerCredsFile, res.ProvisionerUser, bootstrap.ProvisionerPermissions("prov")},
		{bootstrap.AdminCredsFile, res.AdminUser, bootstrap.AdminPermissions("prov")},
	} {
		data, err := os.ReadFile(filepath.Join(env.Dir, u.file))
		if err != nil {
			t.Fatal(err)
		}
		token, err := jwt.ParseDecoratedJWT(data)
		if err != nil {
			t.Fatal(err)
		}
		uc, err := jwt.DecodeUserClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if uc.Subject != u.pub || uc.IssuerAccount != res.SystemAccount || uc.Issuer != sysSigning {
			t.Errorf("%s: subject %s issuer %s issuer_account %s; want %s signed by %s of %s", u.file, uc.Subject, uc.Issuer, uc.IssuerAccount, u.pub, sysSigning, res.SystemAccount)
		}
		got, _ := json.Marshal(uc.Permissions)
		want, _ := json.Marshal(u.perms)
		if string(got) != string(want) {
			t.Errorf("%s: permissions %s, want %s", u.file, got, want)
		}
		kp, err := jwt.ParseDecoratedUserNKey(data)
		if err != nil {
			t.Fatal(err)
		}
		if got := pub(t, kp); got != u.pub {
			t.Errorf("%s: the seed is for %s, the JWT for %s", u.file, got, u.pub)
		}
	}
}

// violations collects the permission violations a connection is told of.
// The server reports them asynchronously, so each check ends with a probe
// known to be refused: once its violation has arrived, every earlier one
// has too.
type violations struct {
	mu   sync.Mutex
	errs []string
	seq  int
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

// wait returns the violations up to and including one about a publish to
// marker, which it sends first.
func (v *violations) wait(t *testing.T, nc *nats.Conn) []string {
	t.Helper()
	v.mu.Lock()
	v.seq++
	marker := fmt.Sprintf("zz.probe.%d", v.seq)
	v.mu.Unlock()
	if err := nc.Publish(marker, nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v.mu.Lock()
		for i, e := range v.errs {
			if strings.Contains(e, `"`+marker+`"`) {
				out := slices.Clone(v.errs[:i])
				v.errs = v.errs[i+1:]
				v.mu.Unlock()
				return out
			}
		}
		v.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no permission violation for the probe %s within 5s; is publishing to zz.> allowed?", marker)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type permCase struct {
	pub, sub []string
}

// checkPerms connects with creds and checks that the allowed publishes and
// subscriptions cause no violation and each forbidden one causes one.
func checkPerms(t *testing.T, env *provtest.Env, creds string, allowed, forbidden permCase) {
	t.Helper()
	v := &violations{}
	nc := env.Connect(t, creds, nats.ErrorHandler(v.handler))

	for _, s := range allowed.pub {
		if err := nc.Publish(s, nil); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
	}
	for _, s := range allowed.sub {
		sub, err := nc.SubscribeSync(s)
		if err != nil {
			t.Fatalf("subscribe %s: %v", s, err)
		}
		defer sub.Unsubscribe()
	}
	for _, e := range v.wait(t, nc) {
		t.Errorf("allowed operation refused: %s", e)
	}

	for _, s := range forbidden.pub {
		if err := nc.Publish(s, nil); err != nil {
			t.Fatalf("publish %s: %v", s, err)
		}
		errs := v.wait(t, nc)
		if len(errs) != 1 || !strings.Contains(errs[0], "Permissions Violation") || !strings.Contains(errs[0], "Publish") || !strings.Contains(errs[0], `"`+s+`"`) {
			t.Errorf("publish to %s: want one permissions violation for it, got %q", s, errs)
		}
	}
	for _, s := range forbidden.sub {
		sub, err := nc.SubscribeSync(s)
		if err != nil {
			t.Fatalf("subscribe %s: %v", s, err)
		}
		errs := v.wait(t, nc)
		if len(errs) != 1 || !strings.Contains(errs[0], "Permissions Violation") || !strings.Contains(errs[0], "Subscription") || !strings.Contains(errs[0], `"`+s+`"`) {
			t.Errorf("subscribe to %s: want one permissions violation for it, got %q", s, errs)
		}
		sub.Unsubscribe()
	}
}

func TestProvisionerLeastPrivilege(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	sys := env.Init.SystemAccount
	checkPerms(t, env, env.Init.ProvisionerCreds,
		permCase{
			pub: []string{
				"$SYS.REQ.CLAIMS.UPDATE",
				"$SYS.REQ.CLAIMS.LIST",
				"$SYS.REQ.CLAIMS.DELETE",
				"$SYS.REQ.ACCOUNT." + sys + ".CLAIMS.LOOKUP",
				"$SYS.REQ.SERVER.PING",
				"$SYS.REQ.SERVER.PING.IDZ",
			},
			sub: []string{"prov.>", "prov.account.create", "$SRV.>", "_INBOX.>"},
		},
		permCase{
			pub: []string{
				"foo",
				"prov.account.create",
				"$SYS.REQ.USER.INFO",
				"$SYS.REQ.ACCOUNT." + sys + ".CONNZ",
				"$SYS.REQ.ACCOUNT.X.CONNZ",
				"$SYS.REQ.SERVER." + "NXXX" + ".KICK",
				"$SRV.PING",
				"_INBOX.x",
			},
			sub: []string{"foo", "$SYS.>", "$SYS.ACCOUNT.>", ">"},
		})

	// And what it may publish is answered: it can ask the servers who they
	// are and the resolver for the system account.
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := nc.Request("$SYS.REQ.SERVER.PING.IDZ", nil, 5*time.Second); err != nil {
		t.Errorf("request $SYS.REQ.SERVER.PING.IDZ: %v", err)
	}
	m, err := nc.Request("$SYS.REQ.ACCOUNT."+sys+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Errorf("request CLAIMS.LOOKUP of the system account: %v", err)
	} else if ac, err := jwt.DecodeAccountClaims(string(m.Data)); err != nil || ac.Subject != sys {
		t.Errorf("CLAIMS.LOOKUP of the system account: %v: %.100s", err, m.Data)
	}
}

func TestAdminLeastPrivilege(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	checkPerms(t, env, env.Init.AdminCreds,
		permCase{
			pub: []string{"prov.account.list", "prov.user.create", "$SRV.PING", "$SRV.INFO.provisioner"},
			sub: []string{"_INBOX.>"},
		},
		permCase{
			pub: []string{"$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.CLAIMS.DELETE", "$SYS.REQ.SERVER.PING", "$SYS.REQ.USER.INFO", "foo"},
			sub: []string{"prov.>", "prov.account.create", "$SRV.>", "foo", "$SYS.>"},
		})
}

// A custom prefix moves both users' permissions with it.
func TestPermissionsFollowThePrefix(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{SubjectPrefix: "acme.prov"})
	checkPerms(t, env, env.Init.ProvisionerCreds,
		permCase{sub: []string{"acme.prov.>"}},
		permCase{sub: []string{"prov.>"}})
	checkPerms(t, env, env.Init.AdminCreds,
		permCase{pub: []string{"acme.prov.account.list"}},
		permCase{pub: []string{"prov.account.list"}})
}

// syncWriter is a log sink the service's goroutines may write to.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
	tb testing.TB
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// The service works with exactly the generated creds: its whole life cycle
// of an account and a user, with no permission violation on its connection
// (its error handler logs them).
func TestServiceRunsWithTheGeneratedCreds(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	logs := &syncWriter{tb: t}
	var w io.Writer = logs
	svc, err := service.Start(context.Background(), env.Config, slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatalf("start the service with %s: %v", bootstrap.ProvisionerCredsFile, err)
	}
	t.Cleanup(func() { svc.Stop() })
	if env.Config.NATSCreds != env.Init.ProvisionerCreds {
		t.Fatalf("the config uses %s, not the generated %s", env.Config.NATSCreds, env.Init.ProvisionerCreds)
	}

	admin := env.Admin(t)
	ok := func(subject string, body any) provtest.Reply {
		t.Helper()
		r := provtest.Request(t, admin, subject, body)
		if r.Code != 0 {
			t.Fatalf("%s: %d %s", subject, r.Code, r.Description)
		}
		return r
	}
	ok("prov.account.create", `{"name":"least"}`)
	ok("prov.account.update", `{"account":"least","description":"changed"}`)
	ok("prov.account.get", `{"account":"least"}`)
	ok("prov.account.list", `{}`)
	u := ok("prov.user.create", `{"account":"least","name":"bob"}`)
	ok("prov.user.list", `{"account":"least"}`)
	ok("prov.user.revoke", map[string]string{"account": "least", "user": u.Body["user"].(map[string]any)["public_key"].(string)})
	ok("prov.account.delete", `{"account":"least"}`)

	// $SRV discovery through the service's own subscriptions.
	if _, err := admin.Request("$SRV.PING.provisioner", nil, 5*time.Second); err != nil {
		t.Errorf("$SRV.PING.provisioner: %v", err)
	}
	if err := svc.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if l := logs.String(); strings.Contains(l, "Permissions Violation") || strings.Contains(l, "permissions violation") {
		t.Errorf("the service's connection was refused something:\n%s", l)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

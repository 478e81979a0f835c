package bootstrap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/seal"
	"github.com/natsprov/provisioner/service"
)

// fileStoreFiles are the files Init writes for a file store deployment,
// relative to its directory.
var fileStoreFiles = []string{
	bootstrap.OperatorJWTFile, bootstrap.OperatorSigningKeyFile, bootstrap.SystemAccountJWTFile, bootstrap.ServiceAccountJWTFile,
	bootstrap.ProvisionerCredsFile, bootstrap.AdminCredsFile, bootstrap.ServiceCredsFile, bootstrap.SealKeyFile,
	bootstrap.ServerConfFile, bootstrap.ConfigFile,
	bootstrap.OperatorIdentityKeyFile, bootstrap.SystemAccountKeyFile, bootstrap.SystemAccountSigningFile,
	bootstrap.ServiceAccountKeyFile, bootstrap.ServiceAccountSigningFile,
}

// jetStreamFiles are those of a JetStream deployment: the same, and the
// container cluster's.
var jetStreamFiles = []string{
	bootstrap.OperatorJWTFile, bootstrap.OperatorSigningKeyFile, bootstrap.SystemAccountJWTFile, bootstrap.ServiceAccountJWTFile,
	bootstrap.ProvisionerCredsFile, bootstrap.AdminCredsFile, bootstrap.ServiceCredsFile, bootstrap.SealKeyFile,
	bootstrap.ServerConfFile, bootstrap.ConfigFile,
	"nats-server-1.container.conf", "nats-server-2.container.conf", "nats-server-3.container.conf", bootstrap.ContainerConfigFile,
	bootstrap.OperatorIdentityKeyFile, bootstrap.SystemAccountKeyFile, bootstrap.SystemAccountSigningFile,
	bootstrap.ServiceAccountKeyFile, bootstrap.ServiceAccountSigningFile,
}

var secretFiles = []string{
	bootstrap.OperatorSigningKeyFile, bootstrap.ProvisionerCredsFile, bootstrap.AdminCredsFile,
	bootstrap.ServiceCredsFile, bootstrap.SealKeyFile,
	bootstrap.OperatorIdentityKeyFile, bootstrap.SystemAccountKeyFile, bootstrap.SystemAccountSigningFile,
	bootstrap.ServiceAccountKeyFile, bootstrap.ServiceAccountSigningFile,
}

// storeKinds are the two kinds of deployment, with the files of each.
var storeKinds = []struct {
	store string
	files []string
}{
	{bootstrap.StoreJetStream, jetStreamFiles},
	{bootstrap.StoreFile, fileStoreFiles},
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
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Files, k.files) {
				t.Errorf("Result.Files = %v, want %v", res.Files, k.files)
			}
			written := snapshot(t, res.Dir)
			for _, f := range k.files {
				if _, ok := written[f]; !ok {
					t.Errorf("Init did not write %s", f)
				}
			}
			for f := range written {
				if f != "." && f != bootstrap.OfflineDir && !slices.Contains(k.files, f) {
					t.Errorf("Init wrote %s, which Result.Files does not list", f)
				}
			}
			if res.Store != k.store {
				t.Errorf("Result.Store = %q, want %q", res.Store, k.store)
			}
		})
	}
	// The zero Options make a JetStream deployment.
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Store != bootstrap.StoreJetStream || !slices.Equal(res.Files, jetStreamFiles) {
		t.Errorf("the default deployment is %s with %v; want %s", res.Store, res.Files, bootstrap.StoreJetStream)
	}
}

// Bad options are refused before anything is written, naming what is
// wrong.
func TestInitRefusesBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts bootstrap.Options
		want string
	}{
		{"unknown store", bootstrap.Options{Store: "sql"}, `"sql"`},
		{"bucket with a dot", bootstrap.Options{KVBucket: "a.b"}, `"a.b"`},
		{"bucket with a wildcard", bootstrap.Options{KVBucket: "kv*"}, `"kv*"`},
		{"prefix with a wildcard", bootstrap.Options{SubjectPrefix: "prov.*"}, `"prov.*"`},
		{"prefix with a space", bootstrap.Options{SubjectPrefix: "a b"}, `"a b"`},
		{"port out of range", bootstrap.Options{Port: 70000}, "70000"},
		{"negative resolver limit", bootstrap.Options{ResolverLimit: -1}, "-1"},
		// A host given as a URL or with its port made a deployment whose
		// listen was "[nats://10.0.0.1]:4222" and nats_url
		// "nats://[10.0.0.1:4222]:4222": nats-server cannot start on it,
		// and init refuses the directory from then on.
		{"host as a URL", bootstrap.Options{Host: "nats://10.0.0.1"}, `host "nats://10.0.0.1"`},
		{"host with a port", bootstrap.Options{Host: "10.0.0.1:4222"}, `host "10.0.0.1:4222"`},
		{"host with a space", bootstrap.Options{Host: "bad host"}, `host "bad host"`},
		{"host with a quote", bootstrap.Options{Host: `"h"`}, `host "\"h\""`},
		{"host in brackets", bootstrap.Options{Host: "[::1]"}, `host "[::1]"`},
		// The users' permissions are built on the prefix: with "$SYS" the
		// admin could publish every system request ($SYS.REQ.CLAIMS.PACK,
		// CONNZ, UPDATE past the service) and the provisioner subscribe to
		// $SYS.>; with an inbox prefix, the admin could answer the
		// provisioner's own requests.
		{"prefix $SYS", bootstrap.Options{SubjectPrefix: "$SYS"}, `"$SYS"`},
		{"prefix $JS.API", bootstrap.Options{SubjectPrefix: "$JS.API"}, `"$JS.API"`},
		{"prefix an inbox", bootstrap.Options{SubjectPrefix: bootstrap.ProvisionerInboxPrefix}, `"` + bootstrap.ProvisionerInboxPrefix + `"`},
		{"prefix _INBOX", bootstrap.Options{SubjectPrefix: "_INBOX.prov"}, `"_INBOX.prov"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "deploy")
			tt.opts.Dir = dir
			_, err := bootstrap.Init(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init(%+v) = %v, want an error naming %s", tt.opts, err, tt.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("the refused Init made %s", dir)
			}
		})
	}
}

// TestInitTakesHostNamesAndAddresses: the host check lets through every
// host name and address, IPv6 included.
func TestInitTakesHostNamesAndAddresses(t *testing.T) {
	for _, h := range []string{"127.0.0.1", "0.0.0.0", "::1", "fe80::1", "localhost", "nats-1.example.com", "n1", "NATS_host"} {
		t.Run(h, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Host: h, Store: bootstrap.StoreFile})
			if err != nil {
				t.Fatalf("Init with host %q: %v", h, err)
			}
			if _, err := config.Load(res.Config); err != nil {
				t.Fatal(err)
			}
		})
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
	for _, f := range append(slices.Clone(jetStreamFiles), bootstrap.ResolverDir, bootstrap.StoreDir, bootstrap.JetStreamDir) {
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
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store})
			if err != nil {
				t.Fatal(err)
			}
			checkModes(t, res.Dir, k.files)
		})
	}
}

func checkModes(t *testing.T, dir string, files []string) {
	t.Helper()
	for _, f := range secretFiles {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, bootstrap.OfflineDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s/%s has mode %v, want 0600", bootstrap.OfflineDir, e.Name(), fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, bootstrap.OfflineDir)); fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %v, want 0700", bootstrap.OfflineDir, fi.Mode().Perm())
	}
	for _, f := range files {
		if slices.Contains(secretFiles, f) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if hasSeed(data) {
			t.Errorf("the public file %s contains a seed", f)
		}
	}
}

// hasSeed reports whether data holds anything that decodes as an nkey
// seed, curve seeds (the seal key) among them.
func hasSeed(data []byte) bool {
	for _, w := range strings.FieldsFunc(string(data), func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) {
		if len(w) == 58 && w[0] == 'S' {
			if _, err := nkeys.FromSeed([]byte(w)); err == nil {
				return true
			}
			if _, err := nkeys.FromCurveSeed([]byte(w)); err == nil {
				return true
			}
		}
	}
	return false
}

func TestHasSeedSeesCurveSeeds(t *testing.T) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	if !hasSeed(append([]byte("key: "), seed...)) {
		t.Fatal("hasSeed misses a curve seed")
	}
	pub, _ := kp.PublicKey()
	if hasSeed([]byte(pub)) {
		t.Fatal("hasSeed takes a public key for a seed")
	}
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

	// The service's own account: signed by the operator signing key,
	// JetStream on, a signing key of its own; both seeds offline.
	sc, err := jwt.DecodeAccountClaims(readJWT(t, filepath.Join(env.Dir, bootstrap.ServiceAccountJWTFile)))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Subject != res.ServiceAccount || sc.Issuer != res.OperatorSigning || sc.Name != bootstrap.ServiceAccountName {
		t.Errorf("the service account JWT: subject %s issuer %s name %q; want %s issued by %s named %s", sc.Subject, sc.Issuer, sc.Name, res.ServiceAccount, res.OperatorSigning, bootstrap.ServiceAccountName)
	}
	if res.ServiceAccount == res.SystemAccount {
		t.Error("the service account is the system account")
	}
	// In a tier per replica count, so that R3 streams are not counted
	// three times against them.
	if sc.Limits.JetStreamLimits != (jwt.JetStreamLimits{}) || len(sc.Limits.JetStreamTieredLimits) != len(bootstrap.ServiceAccountTiers) {
		t.Errorf("the service account's JetStream limits are flat %+v, tiers %+v; want tiers %v only", sc.Limits.JetStreamLimits, sc.Limits.JetStreamTieredLimits, bootstrap.ServiceAccountTiers)
	}
	for _, r := range []int{1, 3} {
		if js := sc.Limits.JetStreamTieredLimits[fmt.Sprintf("R%d", r)]; js.MemoryStorage != bootstrap.ServiceAccountMemStorage || js.DiskStorage != bootstrap.ServiceAccountDiskStorage || js.Streams != -1 || js.Consumer != -1 {
			t.Errorf("the service account's JetStream limits in tier R%d are %+v", r, js)
		}
	}
	vr = jwt.ValidationResults{}
	sc.Validate(&vr)
	if errs := vr.Errors(); len(errs) > 0 {
		t.Errorf("the service account JWT does not validate: %v", errs)
	}
	if got := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.ServiceAccountKeyFile))); got != res.ServiceAccount {
		t.Errorf("%s holds %s, want %s", bootstrap.ServiceAccountKeyFile, got, res.ServiceAccount)
	}
	svcSigning := pub(t, readSeed(t, filepath.Join(env.Dir, bootstrap.ServiceAccountSigningFile)))
	if !sc.SigningKeys.Contains(svcSigning) || svcSigning == res.ServiceAccount {
		t.Errorf("the service account's signing keys %v do not hold %s from %s", sc.SigningKeys, svcSigning, bootstrap.ServiceAccountSigningFile)
	}

	// The users are signed by their account's signing key, with the
	// permissions Init advertises.
	for _, u := range []struct {
		file, pub        string
		account, signing string
		perms            jwt.Permissions
	}{
		{bootstrap.ProvisionerCredsFile, res.ProvisionerUser, res.SystemAccount, sysSigning, bootstrap.ProvisionerPermissions("prov")},
		{bootstrap.AdminCredsFile, res.AdminUser, res.SystemAccount, sysSigning, bootstrap.AdminPermissions("prov")},
		{bootstrap.ServiceCredsFile, res.ServiceUser, res.ServiceAccount, svcSigning, bootstrap.ServicePermissions(config.DefaultKVBucket, config.DefaultSubjectPrefix)},
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
		if uc.Subject != u.pub || uc.IssuerAccount != u.account || uc.Issuer != u.signing {
			t.Errorf("%s: subject %s issuer %s issuer_account %s; want %s signed by %s of %s", u.file, uc.Subject, uc.Issuer, uc.IssuerAccount, u.pub, u.signing, u.account)
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
				"$SYS.REQ.SERVER.PING.IDZ",
				"$SYS.REQ.SERVER.PING.VARZ",
				"prov.events.account.created",
			},
			sub: []string{
				"prov.>", "prov.account.create", "$SRV.>", "_INBOX_provisioner.>",
				"$SYS.SERVER.*.STATSZ", "$SYS.SERVER.NXXX.STATSZ", "$SYS.SERVER.*.SHUTDOWN",
			},
		},
		permCase{
			pub: []string{
				"foo",
				"prov.account.create",
				"$SYS.REQ.CLAIMS.PACK",
				"$SYS.REQ.CLAIMS.X",
				"$SYS.REQ.SERVER.PING",
				"$SYS.REQ.SERVER.PING.CONNZ",
				"$SYS.REQ.SERVER.PING.STATSZ",
				"$SYS.REQ.SERVER.PING.JSZ",
				"$SYS.REQ.USER.INFO",
				"$SYS.REQ.ACCOUNT." + sys + ".CONNZ",
				"$SYS.REQ.ACCOUNT.X.CONNZ",
				"$SYS.REQ.SERVER." + "NXXX" + ".KICK",
				"$SRV.PING",
				"_INBOX.x",
				"_INBOX_admin.x",
			},
			sub: []string{
				"foo", "$SYS.>", "$SYS.ACCOUNT.>", ">", "_INBOX.>", "_INBOX_admin.>",
				"$SYS.SERVER.*.CLIENT.AUTH.ERR", "$SYS.ACCOUNT.*.CONNECT",
			},
		})

	// And what it may publish is answered: it can ask the servers who they
	// are and how they are set, and the resolver for the system account.
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	for _, subj := range []string{"$SYS.REQ.SERVER.PING.IDZ", "$SYS.REQ.SERVER.PING.VARZ"} {
		if _, err := nc.Request(subj, nil, 5*time.Second); err != nil {
			t.Errorf("request %s: %v", subj, err)
		}
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
			sub: []string{"_INBOX_admin.>", "prov.events.>", "prov.events.account.created"},
		},
		permCase{
			pub: []string{
				"$SYS.REQ.CLAIMS.UPDATE", "$SYS.REQ.CLAIMS.DELETE", "$SYS.REQ.SERVER.PING", "$SYS.REQ.USER.INFO", "foo",
				// Events come from the provisioner only.
				"prov.events.account.created",
			},
			sub: []string{
				"prov.>", "prov.account.create", "$SRV.>", "foo", "$SYS.>",
				"_INBOX.>", "_INBOX_provisioner.>", "_INBOX_service.>",
			},
		})
}

// An admin connection with the default inbox cannot read replies: its
// subscription to _INBOX.> is refused by the server. With its own prefix,
// as `nats --inbox-prefix _INBOX_admin` uses, requests work; here the
// provisioner's user answers, through allow_responses, as the service
// does. And events the provisioner publishes reach the admin.
func TestAdminInboxOnly(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	prov := env.Connect(t, env.Init.ProvisionerCreds)
	if _, err := prov.Subscribe("prov.echo", func(m *nats.Msg) { m.Respond(append([]byte("echo "), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	if err := prov.Flush(); err != nil {
		t.Fatal(err)
	}

	// The default inbox: refused.
	v := &violations{}
	plain, err := nats.Connect(env.Server.URL(), nats.UserCredentials(env.Init.AdminCreds), nats.ErrorHandler(v.handler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plain.Close)
	if _, err := plain.Request("prov.echo", []byte("hi"), 500*time.Millisecond); err == nil {
		t.Error("a request with the default _INBOX. prefix got its reply")
	}
	errs := v.wait(t, plain)
	if !slices.ContainsFunc(errs, func(e string) bool {
		return strings.Contains(e, "Permissions Violation") && strings.Contains(e, "Subscription") && strings.Contains(e, `"_INBOX.`)
	}) {
		t.Errorf("no permissions violation for the _INBOX. subscription; got %q", errs)
	}

	// Its own prefix: answered.
	admin := env.Admin(t)
	m, err := admin.Request("prov.echo", []byte("hi"), 5*time.Second)
	if err != nil {
		t.Fatalf("a request with the %s prefix: %v", bootstrap.AdminInboxPrefix, err)
	}
	if string(m.Data) != "echo hi" {
		t.Errorf("reply %q", m.Data)
	}

	// Events.
	events, err := admin.SubscribeSync("prov.events.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := prov.Publish("prov.events.account.created", []byte(`{"account":"A"}`)); err != nil {
		t.Fatal(err)
	}
	if e, err := events.NextMsg(5 * time.Second); err != nil || e.Subject != "prov.events.account.created" {
		t.Errorf("the admin did not get the event: %v %v", e, err)
	}
}

// A custom prefix moves both users' permissions with it.
func TestPermissionsFollowThePrefix(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{SubjectPrefix: "acme.prov"})
	checkPerms(t, env, env.Init.ProvisionerCreds,
		permCase{pub: []string{"acme.prov.events.x"}, sub: []string{"acme.prov.>"}},
		permCase{pub: []string{"prov.events.x"}, sub: []string{"prov.>"}})
	checkPerms(t, env, env.Init.AdminCreds,
		permCase{pub: []string{"acme.prov.account.list"}, sub: []string{"acme.prov.events.>"}},
		permCase{pub: []string{"prov.account.list", "acme.prov.events.x"}, sub: []string{"prov.events.>"}})
}

// otherUser makes a user of the service's account with every permission,
// signed by the account's signing key from the offline directory: what
// another tenant of that account could do, for the service user to be
// kept out of.
func otherUser(t *testing.T, env *provtest.Env) *nats.Conn {
	t.Helper()
	signer := readSeed(t, filepath.Join(env.Dir, bootstrap.ServiceAccountSigningFile))
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	uc := jwt.NewUserClaims(pub(t, ukp))
	uc.IssuerAccount = env.Init.ServiceAccount
	token, err := uc.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := ukp.Seed()
	creds := filepath.Join(t.TempDir(), "other.creds")
	data, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(creds, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return env.Connect(t, creds)
}

// The service user can create, read, write and watch its KV bucket with
// nats.go's jetstream package, with no permission violation, and cannot
// touch any other stream of its account, nor the bucket's stream itself
// beyond what the KV API needs.
func TestServiceUserKV(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{KVBucket: "prov_kv"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Another stream and bucket in the same account, made by someone else.
	otherJS, err := jetstream.New(otherUser(t, env))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otherJS.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	otherKV, err := otherJS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otherKV.Put(ctx, "secret", []byte("not yours")); err != nil {
		t.Fatal(err)
	}

	v := &violations{}
	nc := env.Connect(t, env.Init.ServiceCreds, nats.ErrorHandler(v.handler))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	// Everything the KV store does.
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "prov_kv", History: 5}); err != nil {
		t.Fatalf("create the bucket: %v", err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "prov_kv", History: 5}); err != nil {
		t.Fatalf("create the bucket again (an existing one is fine): %v", err)
	}
	// Not an update (one could turn purges on): tried on a connection of
	// its own, since the refusal is a violation.
	ujs, err := jetstream.New(env.Connect(t, env.Init.ServiceCreds))
	if err != nil {
		t.Fatal(err)
	}
	uctx, ucancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := ujs.UpdateKeyValue(uctx, jetstream.KeyValueConfig{Bucket: "prov_kv", History: 5, Description: "accounts"}); err == nil {
		t.Fatal("the service user may update its bucket's stream")
	}
	ucancel()
	kv, err := js.KeyValue(ctx, "prov_kv")
	if err != nil {
		t.Fatalf("look the bucket up: %v", err)
	}
	if _, err := kv.Status(ctx); err != nil {
		t.Fatalf("bucket status: %v", err)
	}
	w, err := kv.Watch(ctx, "acct.>")
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	if e := <-w.Updates(); e != nil {
		t.Fatalf("the watch of an empty bucket starts with %v, want the end-of-initial-values marker", e)
	}
	// Each write's update is read before the next write: the purge of
	// acct.A2 rolls up (removes) its earlier revisions, and one the
	// watch's consumer had not sent yet (on a loaded machine, the delete
	// marker) was never delivered, so the watch waited for it until ctx.
	watched := func(want string) {
		t.Helper()
		select {
		case e := <-w.Updates():
			if e == nil || string(e.Value()) != want {
				t.Fatalf("watch: got %v, want value %q", e, want)
			}
		case <-ctx.Done():
			t.Fatalf("watch: no update %q", want)
		}
	}
	rev, err := kv.Create(ctx, "acct.A1", []byte("v1"))
	if err != nil {
		t.Fatalf("create a key: %v", err)
	}
	watched("v1")
	if _, err := kv.Create(ctx, "acct.A1", []byte("again")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("create an existing key: %v, want ErrKeyExists", err)
	}
	rev2, err := kv.Update(ctx, "acct.A1", []byte("v2"), rev)
	if err != nil {
		t.Fatalf("update a key: %v", err)
	}
	watched("v2")
	if _, err := kv.Update(ctx, "acct.A1", []byte("stale"), rev); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("update with a stale revision: %v, want ErrKeyRevisionMismatch", err)
	}
	if _, err := kv.Put(ctx, "acct.A2", []byte("p")); err != nil {
		t.Fatalf("put: %v", err)
	}
	watched("p")
	e, err := kv.Get(ctx, "acct.A1")
	if err != nil || string(e.Value()) != "v2" || e.Revision() != rev2 {
		t.Fatalf("get: %v %v", e, err)
	}
	if e, err := kv.GetRevision(ctx, "acct.A1", rev); err != nil || string(e.Value()) != "v1" {
		t.Fatalf("get a revision: %v %v", e, err)
	}
	if _, err := kv.History(ctx, "acct.A1"); err != nil {
		t.Fatalf("history: %v", err)
	}
	if keys, err := kv.Keys(ctx); err != nil || len(keys) != 2 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	if err := kv.Delete(ctx, "acct.A2"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	watched("")
	if err := kv.Purge(ctx, "acct.A2"); err != nil {
		t.Fatalf("purge: %v", err)
	}
	watched("")
	if err := w.Stop(); err != nil {
		t.Fatalf("stop the watch: %v", err)
	}
	for _, e := range v.wait(t, nc) {
		t.Errorf("the KV store's operations caused a violation: %s", e)
	}

	// Nothing else: other streams, other buckets, the bucket's stream
	// beyond the KV API, or anyone's inbox.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	refused := []struct {
		name    string
		subject string // the subject whose violation is expected
		do      func() error
	}{
		{"create another stream", "$JS.API.STREAM.CREATE.MINE", func() error {
			_, err := js.CreateStream(short(), jetstream.StreamConfig{Name: "MINE", Subjects: []string{"mine.>"}})
			return err
		}},
		{"info of another stream", "$JS.API.STREAM.INFO.OTHER", func() error { _, err := js.Stream(short(), "OTHER"); return err }},
		{"delete another stream", "$JS.API.STREAM.DELETE.OTHER", func() error { return js.DeleteStream(short(), "OTHER") }},
		{"delete its own bucket", "$JS.API.STREAM.DELETE.KV_prov_kv", func() error { return js.DeleteKeyValue(short(), "prov_kv") }},
		{"purge its own stream", "$JS.API.STREAM.PURGE.KV_prov_kv", func() error {
			_, err := nc.Request("$JS.API.STREAM.PURGE.KV_prov_kv", nil, 300*time.Millisecond)
			return err
		}},
		{"list the streams", "$JS.API.STREAM.NAMES", func() error {
			_, err := nc.Request("$JS.API.STREAM.NAMES", nil, 300*time.Millisecond)
			return err
		}},
		{"open another bucket", "$JS.API.STREAM.INFO.KV_other", func() error { _, err := js.KeyValue(short(), "other"); return err }},
		{"read another bucket directly", "$JS.API.DIRECT.GET.KV_other.$KV.other.secret", func() error {
			_, err := nc.Request("$JS.API.DIRECT.GET.KV_other.$KV.other.secret", nil, 300*time.Millisecond)
			return err
		}},
		{"write another bucket", "$KV.other.secret", func() error {
			_, err := js.Publish(short(), "$KV.other.secret", []byte("mine now"))
			return err
		}},
		{"publish to another stream", "other.x", func() error { _, err := js.Publish(short(), "other.x", nil); return err }},
		{"consume another stream", "$JS.API.CONSUMER.CREATE.OTHER.", func() error {
			_, err := js.CreateOrUpdateConsumer(short(), "OTHER", jetstream.ConsumerConfig{})
			return err
		}},
	}
	for _, r := range refused {
		t.Run(r.name, func(t *testing.T) {
			if err := r.do(); err == nil {
				t.Errorf("%s succeeded", r.name)
			}
			errs := v.wait(t, nc)
			if !slices.ContainsFunc(errs, func(e string) bool {
				return strings.Contains(e, "Permissions Violation") && strings.Contains(e, `"`+r.subject)
			}) {
				t.Errorf("no permissions violation for %s; got %q", r.subject, errs)
			}
		})
	}
	checkPerms(t, env, env.Init.ServiceCreds,
		permCase{sub: []string{"_INBOX_service.>"}},
		permCase{sub: []string{"_INBOX.>", "_INBOX_admin.>", "$KV.>", "$KV.prov_kv.>", "other.>", "$JS.API.>"}})

	// The other bucket is as it was.
	if e, err := otherKV.Get(ctx, "secret"); err != nil || string(e.Value()) != "not yours" {
		t.Errorf("the other bucket changed: %v %v", e, err)
	}
}

// The bucket name moves the service user's permissions with it.
func TestServicePermissionsFollowTheBucket(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{KVBucket: "custom"})
	v := &violations{}
	nc := env.Connect(t, env.Init.ServiceCreds, nats.ErrorHandler(v.handler))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "custom"}); err != nil {
		t.Fatalf("create the bucket custom: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if _, err := js.CreateKeyValue(short, jetstream.KeyValueConfig{Bucket: config.DefaultKVBucket}); err == nil {
		t.Errorf("the service user of bucket custom created the bucket %s", config.DefaultKVBucket)
	}
	if errs := v.wait(t, nc); len(errs) != 1 || !strings.Contains(errs[0], `"$JS.API.STREAM.CREATE.KV_`+config.DefaultKVBucket+`"`) {
		t.Errorf("want one violation, for creating the bucket %s; got %q", config.DefaultKVBucket, errs)
	}
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

// config.json loads, with the store Init was asked for, and names only
// files Init wrote, relative to the directory so that it can move.
func TestConfigFiles(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store, Port: 14222})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(res.Config)
			if err != nil {
				t.Fatalf("config.json does not load: %v", err)
			}
			if cfg.StoreKind() != k.store {
				t.Errorf("config.json selects the %s store, want %s", cfg.StoreKind(), k.store)
			}
			if cfg.NATSURL != "nats://127.0.0.1:14222" || cfg.NATSURL != res.URL {
				t.Errorf("nats_url = %q, Result.URL %q", cfg.NATSURL, res.URL)
			}
			// Both kinds seal seeds and have the service's creds.
			if cfg.SealKey != res.SealKeyFile || cfg.ServiceCreds != res.ServiceCreds || cfg.NATSCreds != res.ProvisionerCreds {
				t.Errorf("seal_key %q service_creds %q nats_creds %q; want %q %q %q", cfg.SealKey, cfg.ServiceCreds, cfg.NATSCreds, res.SealKeyFile, res.ServiceCreds, res.ProvisionerCreds)
			}
			switch k.store {
			case bootstrap.StoreFile:
				if cfg.StoreDir != filepath.Join(res.Dir, bootstrap.StoreDir) {
					t.Errorf("store_dir = %q", cfg.StoreDir)
				}
			case bootstrap.StoreJetStream:
				if cfg.KVBucket != config.DefaultKVBucket || cfg.KVReplicas != 0 || res.KVBucket != cfg.KVBucket {
					t.Errorf("kv_bucket %q kv_replicas %d; want %s and 0 (chosen at start)", cfg.KVBucket, cfg.KVReplicas, config.DefaultKVBucket)
				}
				cc, err := config.Load(filepath.Join(res.Dir, bootstrap.ContainerConfigFile))
				if err != nil {
					t.Fatalf("%s does not load: %v", bootstrap.ContainerConfigFile, err)
				}
				if cc.NATSURL != "nats://n1:4222,nats://n2:4222,nats://n3:4222" || cc.KVReplicas != 3 || cc.StoreKind() != bootstrap.StoreJetStream {
					t.Errorf("%s: nats_url %q kv_replicas %d store %s", bootstrap.ContainerConfigFile, cc.NATSURL, cc.KVReplicas, cc.StoreKind())
				}
			}
			for _, f := range []string{bootstrap.ConfigFile, bootstrap.ContainerConfigFile} {
				raw, err := os.ReadFile(filepath.Join(res.Dir, f))
				if errors.Is(err, fs.ErrNotExist) && k.store == bootstrap.StoreFile {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(raw), res.Dir) {
					t.Errorf("%s holds absolute paths; the deployment could not move:\n%s", f, raw)
				}
			}
		})
	}
}

// The host's nats-server.conf turns JetStream on in the deployment
// directory, fsyncing every write, and preloads both accounts; the
// container cluster's configs differ only where a container must, and in
// keeping the default sync interval (three replicas make a write durable).
func TestServerConfigs(t *testing.T) {
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store})
			if err != nil {
				t.Fatal(err)
			}
			opts, err := server.ProcessConfigFile(res.ServerConf)
			if err != nil {
				t.Fatal(err)
			}
			if !opts.JetStream || opts.StoreDir != filepath.Join(res.Dir, bootstrap.JetStreamDir) || !opts.SyncAlways {
				t.Errorf("nats-server.conf: jetstream %v store_dir %q sync always %v; want on, %s, always", opts.JetStream, opts.StoreDir, opts.SyncAlways, filepath.Join(res.Dir, bootstrap.JetStreamDir))
			}
			checkPreload(t, res.ServerConf, res)
			if k.store != bootstrap.StoreJetStream {
				return
			}
			for n := 1; n <= bootstrap.ClusterSize; n++ {
				path := filepath.Join(res.Dir, bootstrap.ContainerConfFile(n))
				m, err := conf.ParseFile(path)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("n%d", n)
				js, _ := m["jetstream"].(map[string]any)
				cl, _ := m["cluster"].(map[string]any)
				res2, _ := m["resolver"].(map[string]any)
				// Each route presents the cluster's route credentials.
				auth, _ := cl["authorization"].(map[string]any)
				var routes []string
				for _, r := range asList(cl["routes"]) {
					u, err := url.Parse(fmt.Sprint(r))
					if err != nil {
						t.Fatal(err)
					}
					if pw, _ := u.User.Password(); u.User.Username() != fmt.Sprint(auth["user"]) || pw == "" || pw != fmt.Sprint(auth["password"]) {
						t.Errorf("%s: route %s does not present the cluster's route credentials", filepath.Base(path), u.Redacted())
					}
					u.User = nil
					routes = append(routes, u.String())
				}
				for _, c := range []struct{ what, got, want string }{
					{"server_name", fmt.Sprint(m["server_name"]), name},
					{"listen", fmt.Sprint(m["listen"]), "0.0.0.0:4222"},
					{"operator", fmt.Sprint(m["operator"]), "/deploy/operator.jwt"},
					{"jetstream.store_dir", fmt.Sprint(js["store_dir"]), "/data/jetstream"},
					{"jetstream.sync_interval (R3: the default)", fmt.Sprint(js["sync_interval"]), "<nil>"},
					{"cluster.name", fmt.Sprint(cl["name"]), bootstrap.ClusterName},
					{"cluster.listen", fmt.Sprint(cl["listen"]), "0.0.0.0:6222"},
					{"cluster.routes", strings.Join(routes, ","), "nats://n1:6222,nats://n2:6222,nats://n3:6222"},
					{"resolver.dir", fmt.Sprint(res2["dir"]), "/data/jwt"},
					{"resolver.type", fmt.Sprint(res2["type"]), "full"},
				} {
					if c.got != c.want {
						t.Errorf("%s: %s = %q, want %q", filepath.Base(path), c.what, c.got, c.want)
					}
				}
				checkPreload(t, path, res)
			}
		})
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// checkPreload checks that a server config preloads exactly the system
// and service accounts, with the JWTs Init wrote.
func checkPreload(t *testing.T, path string, res *bootstrap.Result) {
	t.Helper()
	m, err := conf.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pre, _ := m["resolver_preload"].(map[string]any)
	want := map[string]string{
		res.SystemAccount:  readJWT(t, filepath.Join(res.Dir, bootstrap.SystemAccountJWTFile)),
		res.ServiceAccount: readJWT(t, filepath.Join(res.Dir, bootstrap.ServiceAccountJWTFile)),
	}
	if len(pre) != len(want) {
		t.Errorf("%s preloads %d accounts, want the system and the service account", filepath.Base(path), len(pre))
	}
	for acc, token := range want {
		if pre[acc] != token {
			t.Errorf("%s does not preload %s with its JWT", filepath.Base(path), acc)
		}
	}
}

// seal.xk is a new curve key each time, and seals and opens.
func TestSealKey(t *testing.T) {
	var pubs []string
	for range 2 {
		res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		k, err := seal.Load(res.SealKeyFile)
		if err != nil {
			t.Fatalf("%s: %v", bootstrap.SealKeyFile, err)
		}
		if k.PublicKey() != res.SealKey || !strings.HasPrefix(res.SealKey, "X") {
			t.Errorf("%s holds %s, Result.SealKey is %s", bootstrap.SealKeyFile, k.PublicKey(), res.SealKey)
		}
		box, err := k.Seal([]byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := k.Open(box); err != nil || string(out) != "secret" {
			t.Errorf("open: %q %v", out, err)
		}
		pubs = append(pubs, k.PublicKey())
	}
	if pubs[0] == pubs[1] {
		t.Error("two deployments got the same seal key")
	}
}

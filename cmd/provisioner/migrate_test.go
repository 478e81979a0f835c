package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/seal"
)

// TestStoreMigrate copies a file store into a KV bucket: the accounts and
// users come over and the service on the bucket serves them; a second run
// changes nothing; an entry the bucket holds newer is left and reported.
func TestStoreMigrate(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	ok := func(op, body string) map[string]any {
		t.Helper()
		r := provtest.Request(t, admin, "prov."+op, body)
		if r.Code != 0 {
			t.Fatalf("%s: %d %q", op, r.Code, r.Description)
		}
		return r.Body
	}
	ok("account.create", `{"name":"acme","roles":{"device":{}}}`)
	ok("user.create", `{"account":"acme","name":"alice"}`)
	ok("account.create", `{"name":"gone"}`)
	ok("account.delete", `{"account":"gone"}`)
	before := ok("account.get", `{"account":"acme"}`)
	storeDir := env.Config.StoreDir
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}

	// The same deployment's config, on the KV store.
	kvConfig := writeKVConfig(t, env, nil)

	// A mistyped directory is refused, and not made: it is not an empty
	// store with nothing to copy.
	typo := storeDir + "-typo"
	_, _, err := runCmd(t, "store", "migrate", "--from-dir", typo, "--config", kvConfig)
	if !errors.Is(err, filestore.ErrNoStore) || !strings.Contains(err.Error(), typo) {
		t.Fatalf("migrate from a directory that does not exist: %v, want ErrNoStore naming it", err)
	}
	if _, serr := os.Stat(typo); !os.IsNotExist(serr) {
		t.Fatalf("migrate made the mistyped directory: %v", serr)
	}

	out, _, err := runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 2 copied") || !strings.Contains(out, "users:    1 copied") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 0 copied, 0 replaced (older in the bucket), 2 already there") {
		t.Fatalf("a second migrate: %v\n%s", err, out)
	}

	env.Config.StoreDir = ""
	kvSvc := env.Start(t)
	after := ok("account.get", `{"account":"acme"}`)
	if after["account"].(map[string]any)["jwt"] != before["account"].(map[string]any)["jwt"] {
		t.Error("the account on the bucket is not the one the file store held")
	}
	users := ok("user.list", `{"account":"acme"}`)
	if n := len(users["users"].([]any)); n != 1 {
		t.Errorf("user.list on the bucket = %v", users)
	}
	if r := provtest.Request(t, admin, "prov.account.get", `{"account":"gone"}`); r.Code != 404 {
		t.Errorf("the deleted account is back: %d", r.Code)
	}
	// Newer in the bucket: left as it is, and said.
	ok("account.update", `{"account":"acme","limits":{"conn":3}}`)
	out, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err == nil || !strings.Contains(out, "left as it is") {
		t.Fatalf("migrate over a newer bucket entry: %v\n%s", err, out)
	}

	// A name that another account holds in the bucket: left as it is, and
	// the summary does not call it newer in the bucket.
	ok("account.create", `{"name":"dup"}`)
	if err := kvSvc.Stop(); err != nil {
		t.Fatal(err)
	}
	env.Config.StoreDir = storeDir
	fileSvc := env.Start(t)
	ok("account.create", `{"name":"dup"}`)
	if err := fileSvc.Stop(); err != nil {
		t.Fatal(err)
	}
	out, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err == nil || !strings.Contains(out, `("dup")`) || strings.Contains(err.Error(), "newer") {
		t.Fatalf("migrate of an account whose name the bucket gives another: %v\n%s\nwant the entry listed and an error that does not call it newer", err, out)
	}
}

// TestStoreReseal rotates the seal key of a bucket: after reseal, the new
// key alone opens every seed; before it, it does not.
func TestStoreReseal(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatal(r.Description)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	newKey := newSealKey(t, env)

	onlyNew := func() error {
		t.Helper()
		key, err := seal.Load(newKey)
		if err != nil {
			t.Fatal(err)
		}
		nc := env.ServiceUser(t)
		kv, err := kvstore.Open(context.Background(), nc, kvstore.Options{Bucket: env.Config.KVBucket, Seal: key, Instance: "check"})
		if err != nil {
			return err
		}
		defer kv.Close()
		a, err := kv.AccountByName(context.Background(), "acme")
		if err != nil {
			return err
		}
		if a.IdentitySeed == "" {
			return errors.New("no identity seed")
		}
		return nil
	}
	if err := onlyNew(); err == nil {
		t.Fatal("the new seal key alone opens the seeds before the reseal: the test is wrong")
	}
	rotateSealKey(t, env, newKey)
	out, _, err := runCmd(t, "store", "reseal", "--config", env.Init.Config)
	if err != nil || !strings.Contains(out, "accounts written") {
		t.Fatalf("reseal: %v\n%s", err, out)
	}
	if err := onlyNew(); err != nil {
		t.Fatalf("after the reseal the new key alone: %v", err)
	}
}

// stoppedWithAcme is a file-store deployment that made account acme and
// stopped.
func stoppedWithAcme(t *testing.T) *provtest.Env {
	t.Helper()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if r := provtest.Request(t, admin, "prov.account.create", `{"name":"acme"}`); r.Code != 0 {
		t.Fatal(r.Description)
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	return env
}

// writeKVSealKey writes a new seal key into the deployment's directory as
// seal-kv.xk, a KV deployment's own, and returns its seed.
func writeKVSealKey(t *testing.T, env *provtest.Env) []byte {
	t.Helper()
	kp, _ := nkeys.CreateCurveKeys()
	seed, _ := kp.Seed()
	os.WriteFile(filepath.Join(env.Dir, "seal-kv.xk"), append(seed, '\n'), 0o600)
	return seed
}

// writeKVConfig writes config.kv.json into the deployment's directory:
// its config on the KV store (no store_dir, nats_url the server's),
// changed by tune (nil: as it is). It returns the file's path.
func writeKVConfig(t *testing.T, env *provtest.Env, tune func(fields map[string]any)) string {
	t.Helper()
	raw, err := os.ReadFile(env.Init.Config)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	delete(fields, "store_dir")
	if tune != nil {
		tune(fields)
	}
	fields["nats_url"] = env.Server.URL()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	kvConfig := filepath.Join(env.Dir, "config.kv.json")
	os.WriteFile(kvConfig, raw, 0o644)
	return kvConfig
}

// newSealKey writes a new seal key file into the deployment's directory
// and returns its path.
func newSealKey(t *testing.T, env *provtest.Env) string {
	t.Helper()
	kp, _ := nkeys.CreateCurveKeys()
	seed, _ := kp.Seed()
	path := filepath.Join(env.Dir, "seal-2.xk")
	if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rotateSealKey makes the key at path the seal_key of the deployment's
// config, and its seal_key seal_key_previous.
func rotateSealKey(t *testing.T, env *provtest.Env, path string) {
	t.Helper()
	raw, _ := os.ReadFile(env.Init.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["seal_key_previous"] = []string{fields["seal_key"].(string)}
	fields["seal_key"] = filepath.Base(path)
	fields["nats_url"] = env.Server.URL()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(env.Init.Config, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// oldKeyInstance starts a KV deployment, creates the named accounts
// through it, stops it, and opens its bucket as the instance named
// instance that still runs with the old seal key as its seal_key. The
// caller closes the store.
func oldKeyInstance(t *testing.T, instance string, names ...string) (*provtest.Env, *kvstore.Store) {
	t.Helper()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	svc := env.Start(t)
	for _, name := range names {
		if r := provtest.Request(t, env.Admin(t), "prov.account.create", `{"name":"`+name+`"}`); r.Code != 0 {
			t.Fatal(r.Description)
		}
	}
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	oldKey, err := seal.Load(env.Init.SealKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	old, err := kvstore.Open(context.Background(), env.ServiceUser(t), kvstore.Options{Bucket: env.Config.KVBucket, Seal: oldKey, Instance: instance})
	if err != nil {
		t.Fatal(err)
	}
	return env, old
}

// TestStoreResealChecksTheBucket rotates the seal key while an instance
// still runs with the old one as its seal_key and writes meanwhile,
// between reseal's writes and its check: the account it wrote is sealed
// with the old key, and a start without that key would refuse it. reseal
// wrote everything it had read, took the other instance's change as
// sealed anew (ErrStale), and said the previous keys can go. Now it
// checks the bucket itself: a write that came once is sealed again; one
// that keeps coming fails reseal, naming the account.
func TestStoreResealChecksTheBucket(t *testing.T) {
	tests := []struct {
		name   string
		writes int // how many of reseal's checks the old instance writes before
		// wantErr: reseal fails and does not say "can go".
		wantErr bool
	}{
		{"one write meanwhile is sealed again", 1, false},
		{"an instance that keeps writing fails reseal", 100, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			// The instance not restarted: the old key is its current one.
			env, old := oldKeyInstance(t, "old", "acme")
			defer old.Close()
			var written []string
			resealChecking = func(ctx context.Context) {
				if len(written) == tt.writes {
					return
				}
				a := testAccount(t, fmt.Sprintf("late-%d", len(written)))
				if _, err := old.CreateAccount(ctx, a); err != nil {
					t.Errorf("the old instance's write: %v", err)
				}
				written = append(written, a.PublicKey)
			}
			t.Cleanup(func() { resealChecking = nil })

			newKey := newSealKey(t, env)
			rotateSealKey(t, env, newKey)
			out, _, err := runCmd(t, "store", "reseal", "--config", env.Init.Config)
			if strings.Contains(out, "can go") == tt.wantErr {
				t.Errorf("reseal says:\n%s", out)
			}
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("reseal: %v\n%s", err, out)
				}
				key, err := seal.Load(newKey)
				if err != nil {
					t.Fatal(err)
				}
				kv, err := kvstore.Open(ctx, env.ServiceUser(t), kvstore.Options{Bucket: env.Config.KVBucket, Seal: key, Instance: "check"})
				if err != nil {
					t.Fatalf("the new key alone after the reseal: %v", err)
				}
				kv.Close()
				return
			}
			if err == nil {
				t.Fatalf("reseal succeeded while an instance sealed with the old key:\n%s", out)
			}
			last := written[len(written)-1]
			if !strings.Contains(err.Error(), "1 accounts") || !strings.Contains(err.Error(), last) || !strings.Contains(err.Error(), "restart every instance") {
				t.Errorf("reseal's error %q does not name 1 account, %s, and what to do", err, last)
			}
		})
	}
}

// TestStoreMigrateLeavesTheSourceAsItWas migrates a file store sealed
// with a key that the KV deployment lists only in seal_key_previous:
// migrate opens the source with the config's keys, and the file store,
// which seals anew at every start, was rewritten sealed with the KV
// deployment's seal_key. Its own deployment, whose seal_key is the old
// key, then no longer opened it, though migrate says the source "is not
// changed".
func TestStoreMigrateLeavesTheSourceAsItWas(t *testing.T) {
	t.Parallel()
	env := stoppedWithAcme(t)
	storeDir := env.Config.StoreDir
	fileKey := env.Config.SealKey

	// The KV deployment's config: its own seal key, the file store's as
	// a previous one.
	writeKVSealKey(t, env)
	kvConfig := writeKVConfig(t, env, func(fields map[string]any) {
		fields["seal_key_previous"] = []string{fields["seal_key"].(string)}
		fields["seal_key"] = "seal-kv.xk"
	})

	out, _, err := runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 1 copied") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	// The file deployment's own key still opens its store.
	key, err := seal.Load(fileKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := filestore.Open(storeDir, filestore.Options{Seal: key})
	if err != nil {
		t.Fatalf("after migrate the file store does not open with its own seal key: %v", err)
	}
	s.Close()
}

// TestConnectErrorsHideTheURLsPassword: a nats_url may carry a user and
// password (or a token); the commands that connect named the URL as given
// when the connection failed, password included. The service redacted it;
// store migrate and store reseal did not.
func TestConnectErrorsHideTheURLsPassword(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(env.Init.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	storeDir := env.Config.StoreDir
	delete(fields, "store_dir")
	// Nothing listens on port 1.
	fields["nats_url"] = "nats://admin:s3cret-pw@127.0.0.1:1"
	raw, _ = json.MarshalIndent(fields, "", "  ")
	kvConfig := filepath.Join(env.Dir, "config.kv.json")
	os.WriteFile(kvConfig, raw, 0o600)
	for _, args := range [][]string{
		{"store", "migrate", "--from-dir", storeDir, "--config", kvConfig},
		{"store", "reseal", "--config", kvConfig},
	} {
		_, _, err := runCmd(t, args...)
		if err == nil {
			t.Fatalf("%s with nothing listening: no error", strings.Join(args[:2], " "))
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%s: the error holds the URL's password: %v", strings.Join(args[:2], " "), err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("%s: the error does not name the URL: %v", strings.Join(args[:2], " "), err)
		}
	}
}

// TestStoreMigrateWhileTheFileStoreServes: a migration is rehearsed while
// the file deployment serves. migrate took the store's lock, so it failed
// with "store is in use" against a running service, and a service
// (re)started while it read could not open its store; after a stop, it
// wrote a new snapshot into the directory it says it does not change.
// It now reads without the lock, says the store was in use, and the
// service goes on.
func TestStoreMigrateWhileTheFileStoreServes(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	ok := func(op, body string) {
		t.Helper()
		if r := provtest.Request(t, admin, "prov."+op, body); r.Code != 0 {
			t.Fatalf("%s: %d %q", op, r.Code, r.Description)
		}
	}
	ok("account.create", `{"name":"acme"}`)
	ok("user.create", `{"account":"acme","name":"alice"}`)
	kvConfig := writeKVConfig(t, env, nil)

	out, errOut, err := runCmd(t, "store", "migrate", "--from-dir", env.Config.StoreDir, "--config", kvConfig)
	if err != nil || !strings.Contains(out, "accounts: 1 copied") {
		t.Fatalf("migrate while the file deployment serves: %v\n%s%s", err, out, errOut)
	}
	if !strings.Contains(errOut, "open in another process") {
		t.Errorf("migrate did not say the store was in use:\n%s", errOut)
	}
	// The service goes on, and starts again.
	ok("account.create", `{"name":"later"}`)
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	env.Start(t)
	ok("account.get", `{"account":"later"}`)
}

// TestStoreResealRefusesAMissingBucket: reseal made the bucket when it was
// missing (a nats_url pointing at another cluster, where the service's
// creds work too) and said that 0 accounts were written and the previous
// seal keys could go, while the real bucket still held records sealed
// with them. It refuses, naming the bucket, and makes nothing.
func TestStoreResealRefusesAMissingBucket(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{}) // no service started: no bucket yet
	rotateSealKey(t, env, newSealKey(t, env))
	out, errOut, err := runCmd(t, "store", "reseal", "--config", env.Init.Config)
	if err == nil || strings.Contains(out, "can go") || !strings.Contains(err.Error(), env.Config.KVBucket) || !strings.Contains(err.Error(), "nothing was resealed") {
		t.Errorf("reseal without a bucket: %v\nstdout %q\nstderr %q\nwant a refusal naming bucket %q", err, out, errOut, env.Config.KVBucket)
	}
	js, jerr := jetstream.New(env.ServiceUser(t))
	if jerr != nil {
		t.Fatal(jerr)
	}
	if _, err := js.KeyValue(context.Background(), env.Config.KVBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("after the refused reseal the bucket: %v, want none made", err)
	}
}

// TestStoreResealNamesAHiddenRecord: a record sealed with the old key that
// the store does not show (a create that lost its name to another account
// and was cut short before removing it, left after reseal's own open) is
// not one an instance keeps writing. reseal said an instance still runs
// with the old key as its seal_key and to restart every instance, which
// changes nothing; it now names the record for what it is.
func TestStoreResealNamesAHiddenRecord(t *testing.T) {
	ctx := context.Background()
	env, old := oldKeyInstance(t, "old", "acme")
	defer old.Close()
	js, err := jetstream.New(env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := js.KeyValue(ctx, env.Config.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	hidden := testAccount(t, "lost")
	other := testAccount(t, "lost")
	once := false
	resealChecking = func(ctx context.Context) {
		if once {
			return
		}
		once = true
		// A create with the old key, whose name then went to another
		// account: its record stays, not shown. Its record is written
		// after the take-over, as a create's that lost its name is (one
		// older than its name entry lost nothing: damage, kept).
		if _, err := old.CreateAccount(ctx, hidden); err != nil {
			t.Errorf("the old instance's create: %v", err)
		}
		if _, err := bucket.Put(ctx, "name."+base64.RawURLEncoding.EncodeToString([]byte("lost")), []byte(other.PublicKey)); err != nil {
			t.Errorf("the name taken over: %v", err)
		}
		if e, err := bucket.Get(ctx, "acct."+hidden.PublicKey); err != nil {
			t.Errorf("the record of the create: %v", err)
		} else if _, err := bucket.Put(ctx, e.Key(), e.Value()); err != nil {
			t.Errorf("the record written after the take-over: %v", err)
		}
	}
	t.Cleanup(func() { resealChecking = nil })

	newKey := newSealKey(t, env)
	rotateSealKey(t, env, newKey)
	out, _, err := runCmd(t, "store", "reseal", "--config", env.Init.Config)
	if err == nil || strings.Contains(out, "can go") {
		t.Fatalf("reseal with a record sealed with the old key left in the bucket: %v\n%s", err, out)
	}
	if !strings.Contains(err.Error(), hidden.PublicKey) || strings.Contains(err.Error(), "restart every instance") || !strings.Contains(err.Error(), "lost its name") {
		t.Errorf("reseal's error %q does not name the hidden record of %s for what it is", err, hidden.PublicKey)
	}
	// As it says: run again, its open removes the record.
	if out, _, err := runCmd(t, "store", "reseal", "--config", env.Init.Config); err != nil || !strings.Contains(out, "can go") {
		t.Fatalf("reseal run again: %v\n%s", err, out)
	}
}

// TestStoreMigrateSaysHowToGiveTheFileStoresSealKey: the KV deployment
// has a seal key of its own (init makes one), so the command the README
// gives, migrate --from-dir --config, met the file store's seeds sealed
// with another key and failed with the file store's "wrong or missing
// seal key ... sealed with another key X...", which names neither
// --seal-key nor seal_key_previous; a --seal-key that did not seal them
// failed the same way. Each error now says what to give, and holds no
// seed.
func TestStoreMigrateSaysHowToGiveTheFileStoresSealKey(t *testing.T) {
	t.Parallel()
	env := stoppedWithAcme(t)
	storeDir := env.Config.StoreDir
	fileKey := env.Config.SealKey
	fileSeed, err := os.ReadFile(fileKey)
	if err != nil {
		t.Fatal(err)
	}

	// The KV deployment's config, with its own seal key alone.
	seed := writeKVSealKey(t, env)
	kvConfig := writeKVConfig(t, env, func(fields map[string]any) { fields["seal_key"] = "seal-kv.xk" })
	noSeed := func(what string, err error) {
		t.Helper()
		for _, s := range [][]byte{seed, fileSeed} {
			if strings.Contains(err.Error(), strings.TrimSpace(string(s))) {
				t.Errorf("%s: the error holds a seal key's seed: %v", what, err)
			}
		}
	}

	_, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig)
	if !errors.Is(err, filestore.ErrSealKey) || !strings.Contains(err.Error(), "--seal-key") || !strings.Contains(err.Error(), "seal_key_previous") {
		t.Errorf("migrate of a file store sealed with another key than the config's: %v\nwant ErrSealKey saying to give its key with --seal-key or seal_key_previous", err)
	}
	noSeed("without --seal-key", err)

	other := filepath.Join(env.Dir, "other.xk")
	okp, _ := nkeys.CreateCurveKeys()
	oseed, _ := okp.Seed()
	os.WriteFile(other, oseed, 0o600)
	_, _, err = runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig, "--seal-key", other)
	if !errors.Is(err, filestore.ErrSealKey) || !strings.Contains(err.Error(), "--seal-key "+other) {
		t.Errorf("migrate with a --seal-key that did not seal the file store: %v\nwant ErrSealKey naming --seal-key %s", err, other)
	}
	noSeed("with another --seal-key", err)

	out, _, err := runCmd(t, "store", "migrate", "--from-dir", storeDir, "--config", kvConfig, "--seal-key", fileKey)
	if err != nil || !strings.Contains(out, "accounts: 1 copied") {
		t.Fatalf("migrate with the file store's key as --seal-key: %v\n%s", err, out)
	}
}

// TestStoreMigrateSaysWhatTheBucketWarns: store migrate, which makes the
// bucket of a new KV deployment, opened it with no logger, so what the
// KV store warns of went nowhere: here, that the bucket it made has one
// replica (a cluster that cannot place three, a single server), whose
// server's disk holds every account's keys. It goes to stderr now, as
// the file store's notes do.
func TestStoreMigrateSaysWhatTheBucketWarns(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	if err := svc.Stop(); err != nil {
		t.Fatal(err)
	}
	kvConfig := writeKVConfig(t, env, nil)

	_, errOut, err := runCmd(t, "store", "migrate", "--from-dir", env.Config.StoreDir, "--config", kvConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "the bucket has one replica") {
		t.Errorf("migrate made a bucket of one replica and did not say so; stderr:\n%s", errOut)
	}
	_, errOut, err = runCmd(t, "store", "reseal", "--config", kvConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "the bucket has one replica") {
		t.Errorf("reseal did not pass on the bucket's warning; stderr:\n%s", errOut)
	}
}

// TestStoreResealSkipsAnAccountRemovedMeanwhile: an account removed
// between reseal's listing and its write (a serving instance's reconciler
// drops tombstones) stopped reseal with "not found", though a removed
// account holds no seed left to seal. reseal now goes on; its check of the
// bucket finds anything still sealed with a previous key.
func TestStoreResealSkipsAnAccountRemovedMeanwhile(t *testing.T) {
	env, other := oldKeyInstance(t, "other", "acme", "zulu")
	defer other.Close()
	resealListed = func(ctx context.Context) {
		a, err := other.AccountByName(ctx, "zulu")
		if err != nil {
			t.Error(err)
			return
		}
		if err := other.RemoveAccount(ctx, a.PublicKey, a.Revision); err != nil {
			t.Errorf("the other instance's removal: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // for reseal's watcher to bring it
	}
	t.Cleanup(func() { resealListed = nil })

	rotateSealKey(t, env, newSealKey(t, env))
	out, _, err := runCmd(t, "store", "reseal", "--config", env.Init.Config)
	if err != nil || !strings.Contains(out, "can go") {
		t.Fatalf("reseal with an account removed meanwhile: %v\n%s", err, out)
	}
}

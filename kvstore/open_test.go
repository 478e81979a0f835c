package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

func TestOpenRefuses(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	svc := d.connect(t, d.svcCreds)
	js, _ := jetstream.New(svc)
	ctx := bg(t)
	for _, cfg := range []jetstream.KeyValueConfig{
		{Bucket: "inmemory", Storage: jetstream.MemoryStorage, History: 1},
		{Bucket: "history", Storage: jetstream.FileStorage, History: 5},
		{Bucket: "expiring", Storage: jetstream.FileStorage, History: 1, TTL: time.Hour},
		{Bucket: "single", Storage: jetstream.FileStorage, History: 1},
	} {
		if _, err := js.CreateKeyValue(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		creds   string
		opts    Options
		want    error
		mention string // the error must say what is wrong
	}{
		{"no seal key", d.svcCreds, Options{}, ErrNoSealKey, "seal key"},
		{"account without JetStream", d.noJSCred, Options{Seal: key}, ErrNoJetStream, "disk_storage"},
		{"system account", d.sysCreds, Options{Seal: key}, ErrNoJetStream, "system account"},
		{"memory storage", d.svcCreds, Options{Seal: key, Bucket: "inmemory"}, ErrBucketMismatch, "storage memory, want file"},
		{"other history", d.svcCreds, Options{Seal: key, Bucket: "history"}, ErrBucketMismatch, "history 5, want 1"},
		{"ttl", d.svcCreds, Options{Seal: key, Bucket: "expiring"}, ErrBucketMismatch, "ttl 1h0m0s"},
		{"other replicas", d.svcCreds, Options{Seal: key, Bucket: "single", Replicas: 3}, ErrBucketMismatch, "replicas 1, want 3"},
		{"bad bucket name", d.svcCreds, Options{Seal: key, Bucket: "a.b"}, nil, "bucket name"},
		{"bad replicas", d.svcCreds, Options{Seal: key, Replicas: 7}, nil, "replicas 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := d.connect(t, tt.creds)
			s, err := Open(ctx, nc, tt.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Open: %q does not say %q", err, tt.mention)
			}
		})
	}
	// Nothing was created by the refusals.
	names := js.KeyValueStoreNames(ctx)
	var got []string
	for n := range names.Name() {
		got = append(got, n)
	}
	if len(got) != 4 {
		t.Fatalf("buckets after refused opens: %v", got)
	}
}

// TestOpenReplicas: with Replicas 0 the store chooses one replica on a
// single server and on a cluster too small for three (once JetStreamWait
// has told it from one still forming), saying what one risks; a cluster
// of three gets three (TestClusterFailover).
func TestOpenReplicas(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		servers int
		say     []string
	}{
		{"single server", 1, []string{"one replica", "disk is lost"}},
		{"cluster of two", 2, []string{"cannot place three replicas", "one replica", "disk is lost"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := startDeployment(t, tt.servers)
			key, _ := newSealKey(t)
			log, logs := newLog(t)
			s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Logger: log, JetStreamWait: 2 * time.Second})
			if s.replicas != 1 {
				t.Fatalf("replicas %d, want 1", s.replicas)
			}
			for _, say := range tt.say {
				if !strings.Contains(logs.String(), say) {
					t.Fatalf("the log does not say %q:\n%s", say, logs)
				}
			}
			st, err := s.kv.Status(bg(t))
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
			if cfg.Storage != jetstream.FileStorage || cfg.MaxMsgsPerSubject != 1 || cfg.Replicas != 1 || !cfg.AllowDirect {
				t.Fatalf("bucket created with %+v", cfg)
			}
			// The store works: a write and a read.
			a := newAccount(t, "works")
			if _, err := s.CreateAccount(bg(t), a); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOpenNoJetStreamOnACluster: a cluster that is starting says
// JetStream is not enabled for every account, so on a cluster Open asks
// again for JetStreamWait before it refuses an account without JetStream;
// on one server it refuses at once. Either way the refusal names what to
// give the account.
func TestOpenNoJetStreamOnACluster(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		servers  int
		min, max time.Duration
	}{
		{"single server", 1, 0, time.Second},
		{"cluster of two", 2, 1500 * time.Millisecond, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := startDeployment(t, tt.servers)
			key, _ := newSealKey(t)
			nc := d.connect(t, d.noJSCred)
			start := time.Now()
			s, err := Open(bg(t), nc, Options{Seal: key, JetStreamWait: 1500 * time.Millisecond})
			took := time.Since(start)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded for an account without JetStream")
			}
			if !errors.Is(err, ErrNoJetStream) || !strings.Contains(err.Error(), "disk_storage") {
				t.Fatalf("Open: %v, want ErrNoJetStream naming disk_storage", err)
			}
			if took < tt.min || took > tt.max {
				t.Fatalf("refused after %v, want between %v and %v", took, tt.min, tt.max)
			}
		})
	}
}

// TestOpenJetStreamEnabledMeanwhile: on a cluster, an Open that finds
// JetStream not enabled for the account asks again, and opens once it is
// (here: the account's JWT is pushed with JetStream limits while Open
// waits, as a starting cluster enables it once its JetStream is up). On
// two servers the bucket's three replicas are then asked for again for
// JetStreamWait before it settles for one: 10 s keeps both waits within
// the test's context.
func TestOpenJetStreamEnabledMeanwhile(t *testing.T) {
	d := startDeployment(t, 2)
	key, _ := newSealKey(t)
	log, logs := newLog(t)
	nc := d.connect(t, d.noJSCred)
	type result struct {
		s   *Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := Open(bg(t), nc, Options{Seal: key, Logger: log, JetStreamWait: 10 * time.Second})
		done <- result{s, err}
	}()
	// Open is asking again before the push.
	eventually(t, 10*time.Second, "Open says it asks again", func() bool {
		return strings.Contains(logs.String(), "asking again")
	})
	sys := d.connect(t, d.sysCreds)
	if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(d.noJSWithJS), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("Open did not return")
	}
	if r.err != nil {
		t.Fatalf("Open after JetStream was enabled: %v", r.err)
	}
	defer r.s.Close()
	// The store works: a write and a read.
	a := newAccount(t, "enabled-later")
	if _, err := r.s.CreateAccount(bg(t), a); err != nil {
		t.Fatal(err)
	}
	if got, err := r.s.AccountByName(bg(t), a.Name); err != nil || got.PublicKey != a.PublicKey {
		t.Fatalf("AccountByName = %v, %v", got.PublicKey, err)
	}
}

// TestSealedAtRest reads the raw bucket: every seed field is sealed, opens
// with the store's key and with no other, and a store opened with another
// key refuses to start.
func TestSealedAtRest(t *testing.T) {
	d := startDeployment(t, 1)
	key, keySeed := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	s := openStore(t, nc, Options{Seal: key})
	ctx := bg(t)
	a := newAccount(t, "secret")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newSealKey(t)

	raw := func() accountRecord {
		t.Helper()
		e, err := s.kv.Get(ctx, accountKey(a.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		for _, seed := range []provision.Seed{a.IdentitySeed, a.SigningKeys[0].Seed, a.SigningKeys[1].Seed} {
			if strings.Contains(string(e.Value()), string(seed)) {
				t.Fatal("a seed is in the bucket in the clear")
			}
		}
		var rec accountRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := raw()
	fields := map[string]string{"identity_seed": rec.IdentitySeed}
	for i, sk := range rec.SigningKeys {
		fields["signing_keys."+string(rune('0'+i))] = sk.Seed
	}
	want := map[string]provision.Seed{"identity_seed": a.IdentitySeed, "signing_keys.0": a.SigningKeys[0].Seed, "signing_keys.1": a.SigningKeys[1].Seed}
	for f, v := range fields {
		if !seal.IsSealed(v) {
			t.Fatalf("%s is not sealed", f)
		}
		if _, err := other.Open(v); !errors.Is(err, seal.ErrUnknownKey) {
			t.Fatalf("%s opens with another key: %v", f, err)
		}
		got, err := key.Open(v)
		if err != nil || provision.Seed(got) != want[f] {
			t.Fatalf("%s does not open to its seed: %v", f, err)
		}
	}

	// A store with another key refuses the bucket, naming the record.
	if _, err := Open(ctx, d.connect(t, d.svcCreds), Options{Seal: other}); err == nil || !errors.Is(err, seal.ErrUnknownKey) || !strings.Contains(err.Error(), accountKey(a.PublicKey)) {
		t.Fatalf("Open with another seal key: %v", err)
	}

	// After a rotation the previous key still opens the records, and the
	// next write seals them with the new key.
	_, newSeed := newSealKey(t)
	rotated, err := seal.New(newSeed, keySeed)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: rotated})
	got, err := s2.Account(ctx, a.PublicKey)
	if err != nil || got.IdentitySeed != a.IdentitySeed {
		t.Fatalf("read after rotation: %v", err)
	}
	if _, err := s2.UpdateAccount(ctx, got, rev); err != nil {
		t.Fatal(err)
	}
	s = s2
	rec = raw()
	for _, v := range append([]string{rec.IdentitySeed}, rec.SigningKeys[0].Seed, rec.SigningKeys[1].Seed) {
		if !rotated.Current(v) {
			t.Fatal("a seed sealed by the previous key was not sealed again on write")
		}
	}
}

func TestOpenContextBoundsLoading(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, d.connect(t, d.svcCreds), Options{Seal: key}); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("Open with a cancelled context: %v, want ErrUnavailable", err)
	}
}

// TestNoRollUpOrPurge: one message with a roll-up header, or a purge, could
// wipe every account's keys; the bucket refuses both.
func TestNoRollUpOrPurge(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	s := openStore(t, nc, Options{Seal: key})
	ctx := bg(t)
	a := newAccount(t, "kept")
	if _, err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(s.subject + "wipe")
	m.Data = []byte("x")
	m.Header.Set("Nats-Rollup", "all")
	if _, err := js.PublishMsg(ctx, m); err == nil {
		t.Error("a roll-up of the whole bucket was taken")
	}
	stream, err := js.Stream(ctx, "KV_"+s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Purge(ctx); err == nil {
		t.Error("a purge of the bucket was taken")
	}
	if got, err := s.AccountLatest(ctx, a.PublicKey); err != nil || got.Name != "kept" {
		t.Fatalf("after the refused wipes the account reads %+v, %v", got, err)
	}
}

// TestOpenBucketWithRollUps: a bucket made by an earlier version allows
// roll-ups (and purges), which this one refuses. The refusal said "fix or
// remove the bucket", and removing it loses every account's keys; it now
// names the edit that fixes it, after which the bucket opens with what it
// held.
func TestOpenBucketWithRollUps(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := bg(t)
	old := makeBucket(t, js, func(c *jetstream.StreamConfig) {
		c.AllowRollup, c.DenyPurge, c.AllowDirect, c.AllowAtomicPublish = true, false, false, false
	})
	_, err = Open(ctx, nc, Options{Seal: key, Instance: "one"})
	if !errors.Is(err, ErrBucketMismatch) || !strings.Contains(err.Error(), "nats stream edit KV_provisioner --no-allow-rollup --deny-purge") {
		t.Fatalf("Open of a bucket that allows roll-ups: %v; want it refused naming the edit that fixes it", err)
	}
	old.AllowRollup, old.DenyPurge = false, true
	if _, err := js.UpdateStream(ctx, old); err != nil {
		t.Fatalf("the edit the refusal names: %v", err)
	}
	openStore(t, nc, Options{Seal: key, Instance: "one"})
}

// TestOpenStoppedWhileAskingAgain: an Open stopped (its context ended, as
// by serve's SIGTERM) while it asks a starting cluster again whether
// JetStream is enabled for the account must fail with the stop, not with
// the refusal it had not reached yet: the answer taken at the stop said
// the account had no JetStream, so service.Run took the stop for a bad
// account and serve exited 1 instead of 0.
func TestOpenStoppedWhileAskingAgain(t *testing.T) {
	d := startDeployment(t, 2)
	key, _ := newSealKey(t)
	log, logs := newLog(t)
	nc := d.connect(t, d.noJSCred)
	ctx, cancel := context.WithCancel(bg(t))
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s, err := Open(ctx, nc, Options{Seal: key, Logger: log, JetStreamWait: 30 * time.Second})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	eventually(t, 10*time.Second, "Open says it asks again", func() bool {
		return strings.Contains(logs.String(), "asking again")
	})
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Open did not return after its context ended")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open stopped while asking again: %v, want an error that wraps the context's end", err)
	}
	if errors.Is(err, ErrNoJetStream) {
		t.Errorf("Open stopped while asking again: %v, want no refusal of the account it had not reached", err)
	}
}

// TestAwaitWritableEndsOnAClosedConnection: a connection nats.go closed
// for good (creds expired or revoked) while Open waited for the bucket to
// answer writes failed every probe "connection closed", taken for
// unavailable: the wait went on every 50 ms until its context ended, and
// the service's start, whose context never ends, neither served nor
// exited. It now fails at once, naming the closed connection.
func TestAwaitWritableEndsOnAClosedConnection(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	s := openStore(t, nc, Options{Seal: key})
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := s.awaitWritable(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("awaitWritable on a closed connection took %s (%v), want a failure at once", took, err)
	}
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("awaitWritable: %v, want the connection named closed", err)
	}
}

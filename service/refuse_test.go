package service_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/kvstore"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestStartRefusesABadJetStreamAccount: issue #8 has the service refuse to
// start, naming what is wrong, when its account has no JetStream or the
// bucket's settings differ from the config. kvstore's TestOpenRefuses
// shows Open refusing; this shows the start does too, at once, rather than
// taking the refusal for JetStream not being up yet and waiting on it.
func TestStartRefusesABadJetStreamAccount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, env *provtest.Env)
		want    error
		mention []string
	}{
		{"bucket with other settings", func(t *testing.T, env *provtest.Env) {
			js, err := jetstream.New(env.ServiceUser(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: env.Config.KVBucket, History: 5, Storage: jetstream.FileStorage}); err != nil {
				t.Fatal(err)
			}
		}, kvstore.ErrBucketMismatch, []string{"history 5, want 1"}},
		{"account without JetStream", func(t *testing.T, env *provtest.Env) {
			pushWithoutJetStream(t, env)
		}, kvstore.ErrNoJetStream, []string{"disk_storage"}},
		// Tiers without one for the bucket's replica count (a kv_replicas
		// of 5 needs its tier added, README): the new bucket is
		// refused (10120), which was taken for limits changed under an
		// existing bucket, so the start waited for ever, saying to
		// restart the servers, which creates no tier.
		{"account without the tier of the bucket's replicas", func(t *testing.T, env *provtest.Env) {
			env.PushServiceAccount(t, func(ac *jwt.AccountClaims) {
				delete(ac.Limits.JetStreamTieredLimits, "R1")
			})
		}, kvstore.ErrNoJetStream, []string{"R1", "--js-tier 1"}},
		// A single server checks the sum of the account's tiers (init's
		// R1 and R3: 8 GiB of disk) against its max_file_store (75% of
		// the free disk by default), and a small host refuses the
		// account's JetStream: the start said to enable jetstream {} or
		// to give the JWT limits, both there already.
		{"server whose max_file_store is below the sum of the tiers", func(t *testing.T, env *provtest.Env) {
			conf, err := os.ReadFile(env.Init.ServerConf)
			if err != nil {
				t.Fatal(err)
			}
			conf = []byte(strings.Replace(string(conf), "jetstream {\n", "jetstream {\n  max_file_store: 6G\n", 1))
			if err := os.WriteFile(env.Init.ServerConf, conf, 0o600); err != nil {
				t.Fatal(err)
			}
			env.Restart(t)
		}, kvstore.ErrNoJetStream, []string{"max_file_store", "sum"}},
		// The bucket there already (a service that ran), the R1 tier
		// taken out: the bucket's watcher (a consumer of one replica) is
		// refused (10120), and the start failed with the server's words
		// alone, naming no tier to add.
		{"bucket there, account without the R1 tier", func(t *testing.T, env *provtest.Env) {
			svc, err := service.Start(context.Background(), env.Config, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			svc.Stop()
			env.PushServiceAccount(t, func(ac *jwt.AccountClaims) {
				delete(ac.Limits.JetStreamTieredLimits, "R1")
			})
		}, kvstore.ErrNoJetStream, []string{"R1", "--js-tier 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := provtest.JetStreamDeployment(t, bootstrap.Options{})
			tt.prepare(t, env)
			err := startRefused(t, env.Config)
			if !errors.Is(err, tt.want) {
				t.Errorf("start: %v, want %v", err, tt.want)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("start: %q does not say %q", err, m)
				}
			}
		})
	}
}

// pushWithoutJetStream pushes the service account's JWT with its JetStream
// limits taken out, signed by the operator signing key, as an operator
// editing the account by mistake would.
func pushWithoutJetStream(t *testing.T, env *provtest.Env) {
	t.Helper()
	env.PushServiceAccount(t, func(ac *jwt.AccountClaims) {
		ac.Limits.JetStreamLimits, ac.Limits.JetStreamTieredLimits = jwt.JetStreamLimits{}, nil
	})
}

// startRefused starts the service with cfg, with no deadline, as serve
// does, and returns the start's error: it fails the test when the start
// succeeds, or still waits after 15 s.
func startRefused(t *testing.T, cfg *config.Config) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		svc *service.Service
		err error
	}
	done := make(chan result, 1)
	go func() {
		svc, err := service.Start(ctx, cfg, slog.New(slog.DiscardHandler))
		done <- result{svc, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		cancel()
		r = <-done
		t.Fatalf("the start still waited after 15s (%v), want a refusal", r.err)
	}
	if r.err == nil {
		r.svc.Stop()
		t.Fatal("the service started")
	}
	return r.err
}

// TestStartRefusedForItsPrefixChangesNoAccount: a config whose
// subject_prefix its creds do not allow is refused at the start, naming the
// refused permission; and the refusal comes before anything is pushed. The
// start pushed the self-service export of the new prefix into the
// service's own account before it checked: every refused start added one,
// under a prefix nobody serves.
func TestStartRefusedForItsPrefixChangesNoAccount(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	cfg := *env.Config
	cfg.SubjectPrefix = "other"
	err := startRefused(t, &cfg)
	if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), `"other.`) {
		t.Errorf("start: %v, want the refused subscription to other.>", err)
	}
	sys := env.Connect(t, env.Init.ProvisionerCreds)
	m, err := sys.Request("$SYS.REQ.ACCOUNT."+env.Init.ServiceAccount+".CLAIMS.LOOKUP", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(string(m.Data))
	if err != nil {
		t.Fatalf("the service account on the server: %v (%q)", err, m.Data)
	}
	for _, e := range ac.Exports {
		if strings.HasPrefix(string(e.Subject), "other.") {
			t.Errorf("the refused start pushed an export %q into the service account", e.Subject)
		}
	}
}

// TestStartRefusedForSelfServiceChangesNoAccount: service_creds that may
// not subscribe to the self-service subjects (an operator's own user, made
// before self-service) are refused at the start, naming the refused
// subscription; and the refusal comes before anything is pushed. The start
// pushed the self-service export into the service's own account first,
// then found the responder deaf: a refused start changed the account.
func TestStartRefusedForSelfServiceChangesNoAccount(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	// An account from before self-service: no export yet.
	env.PushServiceAccount(t, func(ac *jwt.AccountClaims) { ac.Exports = nil })
	before := lookup(t, env, env.Init.ServiceAccount)
	perms := bootstrap.ServicePermissions(env.Config.KVBucket, env.Config.SubjectPrefix)
	perms.Sub.Allow = jwt.StringList{bootstrap.ServiceInboxPrefix + ".>", "$SRV.>"}
	cfg := *env.Config
	cfg.ServiceCreds = env.ServiceAccountCreds(t, "noself", perms)
	err := startRefused(t, &cfg)
	if !strings.Contains(err.Error(), "Permissions Violation") || !strings.Contains(err.Error(), ".self.") {
		t.Errorf("start: %v, want the refused subscription to the self-service subjects", err)
	}
	if after := lookup(t, env, env.Init.ServiceAccount); after != before {
		ac, _ := jwt.DecodeAccountClaims(after)
		t.Errorf("the refused start changed the service account on the server (exports now %v)", ac.Exports)
	}
}

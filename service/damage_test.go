package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestDamagedRecordIsReported: an account record damaged in the bucket
// while the instance ran (written by hand with the service's creds) was
// logged at ERROR, and prov.status and the health endpoint said nothing,
// while every read of the account failed and the next start of any
// instance refused the bucket. prov.status now names the record's key
// (nothing of its value), and the health endpoint, still 200 ok (the
// record is every instance's: a 503 would take them all out of a load
// balancer at once, for the accounts they can still serve), warns of it
// without naming it; both end once the record is put back.
func TestDamagedRecordIsReported(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	cfg := *env.Config
	cfg.Instance = "damaged-1"
	cfg.HealthListen = addr
	svc, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	created, err := svc.Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	key := "acct." + created.Account.PublicKey
	js, err := jetstream.New(env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, cfg.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	good, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	const marker = "MARKER-OF-THE-VALUE"
	if _, err := kv.Put(ctx, key, []byte("{damaged "+marker)); err != nil {
		t.Fatal(err)
	}

	admin := env.Admin(t)
	status := func() map[string]any {
		return provtest.Request(t, admin, cfg.SubjectPrefix+".status."+cfg.Instance, `{}`).Body
	}
	var st map[string]any
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st = status(); st["damage"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status with %s damaged: %v, want the damage named", key, st)
		}
	}
	if d, _ := st["damage"].(string); !strings.Contains(d, key) || strings.Contains(d, marker) {
		t.Errorf("prov.status damage %q: want %s named, and nothing of its value", d, key)
	}
	if st["problem"] != nil {
		t.Errorf("prov.status problem %q for a damaged record", st["problem"])
	}
	h := waitHealth(t, addr, http.StatusOK, api.HealthOK)
	if len(h.Warnings) != 1 || !strings.Contains(h.Warnings[0], "prov.status") {
		t.Errorf("health warnings %q, want one saying prov.status names the record", h.Warnings)
	}
	// The endpoint answers anyone who reaches it: no keys, no bucket (as
	// the store's words name it).
	if len(h.Warnings) > 0 && (strings.Contains(h.Warnings[0], created.Account.PublicKey) || strings.Contains(h.Warnings[0], fmt.Sprintf("%q", cfg.KVBucket))) {
		t.Errorf("health warning %q names the record or the bucket", h.Warnings[0])
	}

	if _, err := kv.Put(ctx, key, good.Value()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st = status(); st["damage"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status with %s put back: damage %q, want none", key, st["damage"])
		}
	}
	if _, h := getHealth(t, addr); len(h.Warnings) != 0 {
		t.Errorf("health warnings %q with the record put back", h.Warnings)
	}
}

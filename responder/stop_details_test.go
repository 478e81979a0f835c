package responder_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestStopCutHidesStoreDetails: a change cut by Stop whose store then
// fails unavailable is answered 504 naming the stop, like any other, but
// the store's error (file paths, bucket and key names) goes to the log
// only, as it does for the same error outside a stop (503 with a ref).
func TestStopCutHidesStoreDetails(t *testing.T) {
	t.Parallel()
	const secret = "/var/lib/provisioner/store/journal-000042"
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	if _, err := svc.Provision.CreateAccount(context.Background(), api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	store := &blockedStore{Store: svc.Store, wrap: func(err error) error {
		return fmt.Errorf("filestore: a journal write failed (write %s: input/output error) (%v); reopen the store: %w", secret, err, provision.ErrUnavailable)
	}}
	p := domain(t, svc, provision.Config{Store: store})
	const wait = 300 * time.Millisecond
	r := extra(t, env, p, responder.Config{Prefix: "prov.cut", Name: "cut", RequestTimeout: time.Minute, StopWait: wait, Cut: p.Halt})
	ch := make(chan provtest.Reply, 1)
	go func() { ch <- provtest.Request(t, admin, "prov.cut.account.update", `{"account":"acme","tags":["x"]}`) }()
	for deadline := time.Now().Add(5 * time.Second); store.held.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the update was not held in its store write")
		}
	}
	r.Stop()
	rep := <-ch
	if rep.Code != api.CodeTimeout || !strings.Contains(rep.Description, "stopped before the request was done") {
		t.Errorf("the cut update: %d %q, want 504 naming the stop", rep.Code, rep.Description)
	}
	if strings.Contains(rep.Description, secret) || strings.Contains(rep.Description, "journal") {
		t.Errorf("the cut update's reply shows the store's error: %q", rep.Description)
	}
	for _, e := range r.Stats().Endpoints {
		if strings.Contains(e.LastError, secret) {
			t.Errorf("$SRV.STATS of %s shows the store's error: %q", e.Name, e.LastError)
		}
	}
}

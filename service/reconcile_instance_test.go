package service_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestRunningReconcileNamesItsInstance: a prov.reconcile whose pass
// outlasts nine tenths of request_timeout is answered {"running":true},
// and prov.status reports the pass once done. But prov.status goes to any
// instance of the queue group, which reports its own last pass: with two
// instances the operator may read the other's, older summary. The reply
// names the instance that runs the pass and the subject on which it alone
// answers status, and that subject is answered by it only, with the pass
// once it ended.
func TestRunningReconcileNamesItsInstance(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Config.ReconcileInterval = config.Duration(time.Minute)
	env.Config.RequestTimeout = config.Duration(2 * time.Second)
	env.Config.ReconcileRate = 2
	ctx := context.Background()
	var svcs []*service.Service
	for _, name := range []string{"inst-a", "inst-b"} {
		cfg := *env.Config
		cfg.Instance = name
		svc, err := service.Start(ctx, &cfg, provtest.Logger(t))
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() { svc.Stop() })
		svcs = append(svcs, svc)
	}
	for i := range 8 {
		if _, err := svcs[0].Provision.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("acc%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	admin := env.Admin(t)
	prefix := env.Config.SubjectPrefix
	var running provtest.Reply
	for deadline := time.Now().Add(60 * time.Second); ; {
		running = provtest.Request(t, admin, prefix+".reconcile", `{}`)
		if running.Code != 0 {
			t.Fatalf("prov.reconcile: %d %q", running.Code, running.Description)
		}
		if r, _ := running.Body["running"].(bool); r {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no prov.reconcile answered running: %s", running.Raw)
		}
	}
	inst, _ := running.Body["instance"].(string)
	subj, _ := running.Body["status_subject"].(string)
	if inst != "inst-a" && inst != "inst-b" || subj != prefix+".status."+inst {
		t.Fatalf("a running prov.reconcile names no instance to ask: %s", running.Raw)
	}
	started, _ := running.Body["started"].(string)
	for deadline := time.Now().Add(60 * time.Second); ; {
		st := provtest.Request(t, admin, subj, `{}`)
		if st.Code != 0 {
			t.Fatalf("%s: %d %q", subj, st.Code, st.Description)
		}
		if got, _ := st.Body["instance"].(string); got != inst {
			t.Fatalf("%s answered by %s, want %s", subj, got, inst)
		}
		last, _ := st.Body["last_reconcile"].(map[string]any)
		if last != nil && last["started"] == started && last["duration"] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reported the pass started %s: %s", subj, started, st.Raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package service_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestInstanceNameTakenWhilePausedIsAProblem: a process paused longer
// than the name's lease (SIGSTOP, its bucket away that long) has its
// instance name taken over by a second process started with the same
// config; once it resumes, both answer prov.status.<instance>. It only
// logged an ERROR, while prov.status's problem and the health endpoint,
// what an operator's checks look at, said all was well. They must say
// so while it lasts, and no longer once the other process stopped.
func TestInstanceNameTakenWhilePausedIsAProblem(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ctx := context.Background()
	cfg := *env.Config
	cfg.Instance = "sleeper"
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	cfg.HealthListen = addr
	var logs provtest.SyncBuffer
	paused, err := service.Start(ctx, &cfg, slog.New(slog.NewTextHandler(io.MultiWriter(&logs, t.Output()), nil)))
	if err != nil {
		t.Fatalf("start the first: %v", err)
	}
	t.Cleanup(func() { paused.Stop() })
	waitHealth(t, addr, http.StatusOK, api.HealthOK)

	paused.StopRenewingInstance() // paused
	cfg2 := cfg
	cfg2.HealthListen = ""
	other, err := service.Start(ctx, &cfg2, provtest.Logger(t))
	if err != nil {
		t.Fatalf("the second start did not take the name of the paused one over: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			other.Stop()
		}
	})
	paused.ResumeRenewingInstance() // resumed: both answer as sleeper

	h := waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthUnavailable)
	if !strings.Contains(strings.Join(h.Problems, "; "), "instance") {
		t.Errorf("health problems %q do not name the instance name", h.Problems)
	}
	st, err := paused.Provision.Status(ctx, api.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Problem, `"sleeper"`) {
		t.Errorf("prov.status of the resumed process: problem %q, want it to say another process took instance \"sleeper\"", st.Problem)
	}
	// Logged once when it starts, not at each renewal while it lasts
	// (every 1.7 s): two more renewals find it taken.
	const takenLog = "another process took over this instance name"
	time.Sleep(4 * time.Second)
	if n := strings.Count(logs.String(), takenLog); n != 1 {
		t.Errorf("the ERROR that another process took the name was logged %d times over three renewals, want once:\n%s", n, logs.String())
	}

	// The other stops: the resumed process takes its name back, and the
	// problem ends.
	if err := other.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	waitHealth(t, addr, http.StatusOK, api.HealthOK)
	if st, _ := paused.Provision.Status(ctx, api.StatusRequest{}); st.Problem != "" {
		t.Errorf("prov.status once the name is back: problem %q", st.Problem)
	}
	if !strings.Contains(logs.String(), "this instance name is this process's again") {
		t.Errorf("the name's return was not logged:\n%s", logs.String())
	}
}

package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestSecondInstanceOfOneNameRefused: a config with an explicit
// "instance" copied to a second machine on the same bucket. Both started
// and both answered prov.status.<instance>, which the README says that
// instance alone answers: a prov.reconcile answered "running" sent the
// operator to a subject the other, with its own older pass, answered as
// well. The second start must fail, naming the instance; once the first
// stopped, the name is free at once.
func TestSecondInstanceOfOneNameRefused(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ctx := context.Background()
	cfg := *env.Config
	cfg.Instance = "twin"
	first, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err != nil {
		t.Fatalf("start the first: %v", err)
	}
	t.Cleanup(func() { first.Stop() })
	began := time.Now()
	second, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err == nil {
		second.Stop()
		t.Fatal("a second instance named twin started beside the first on one bucket")
	}
	if !strings.Contains(err.Error(), `"twin"`) || !strings.Contains(err.Error(), "instance") {
		t.Fatalf("the second start's error does not name the instance: %v", err)
	}
	if took := time.Since(began); took > 30*time.Second {
		t.Fatalf("the second start took %s to fail", took)
	}
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	third, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	t.Cleanup(func() { third.Stop() })
	if took := time.Since(began); took > 4*time.Second {
		t.Fatalf("a start after the first stopped waited %s: a stop releases the name", took)
	}
}

// TestInstanceNameOfACrashedProcessTakenOver: a process that crashed
// leaves its lease on the instance name in the bucket, unrenewed. Its
// restart (same config, same name) must take the name over once the
// lease ran out, not be refused as a second instance.
func TestInstanceNameOfACrashedProcessTakenOver(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	ctx := context.Background()
	cfg := *env.Config
	cfg.Instance = "phoenix"
	crashed, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err != nil {
		t.Fatalf("start the first: %v", err)
	}
	t.Cleanup(func() { crashed.Stop() })
	crashed.StopRenewingInstance()
	began := time.Now()
	restarted, err := service.Start(ctx, &cfg, provtest.Logger(t))
	if err != nil {
		t.Fatalf("a restart after a crash was refused: %v", err)
	}
	t.Cleanup(func() { restarted.Stop() })
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("the restart took %s to take the name over", took)
	}
}

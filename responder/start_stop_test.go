package responder_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
	"github.com/natsprov/provisioner/testenv"
)

// TestStartCutByAStop: a start whose last flush of its subscriptions is
// held by a server that does not answer (paused, a host gone without a
// reset) waited for the flush's own 10 s and then failed "flush
// subscriptions: nats: timeout", though a stop (SIGTERM) had come
// meanwhile: serve took a start refused for a real reason, exited 2, and
// took 20 s where the README promises a stop that exits 0. The stop must
// cut the wait, with an error that says it was stopped.
func TestStartCutByAStop(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	server := env.RealServer(t)
	svc := env.Start(t)
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	testenv.Pause(t, server)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	began := time.Now()
	r, err := responder.New(ctx, nc, svc.Provision, responder.Config{Prefix: "prov.cut", Name: "cut", Logger: provtest.Logger(t)})
	took := time.Since(began)
	if err == nil {
		r.Stop()
		t.Fatal("a start whose flush no server answers succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the start cut by a stop failed with %v, want an error that wraps the stop (context.Canceled)", err)
	}
	if took > 5*time.Second {
		t.Errorf("the start took %s to end after the stop at 300ms", took.Round(time.Millisecond))
	}
}

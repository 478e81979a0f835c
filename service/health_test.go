package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// getHealth asks the health endpoint at addr; code 0 when it does not
// answer.
func getHealth(t *testing.T, addr string) (int, api.HealthReply) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + api.HealthPath)
	if err != nil {
		return 0, api.HealthReply{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var h api.HealthReply
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("health answer %s: %v: %q", resp.Status, err, body)
	}
	return resp.StatusCode, h
}

// waitHealth waits until the endpoint answers status (with code), and
// returns the answer.
func waitHealth(t *testing.T, addr string, code int, status string) api.HealthReply {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, h := getHealth(t, addr)
		if got == code && h.Status == status {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: %d %+v, want %d %s", got, h, code, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthEndpoint: health_listen answers what a container healthcheck
// or a readiness probe needs: starting while the service waits for NATS,
// ok while it serves, unavailable naming the connection while NATS is
// away and naming the store once the store refuses every change (its
// bucket deleted), stopping while it drains, and nothing once stopped.
func TestHealthEndpoint(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	env.Config.HealthListen = addr
	env.Config.Instance = "health-1"
	env.Server.Stop()

	type result struct {
		svc *service.Service
		err error
	}
	started := make(chan result, 1)
	go func() {
		svc, err := service.Start(context.Background(), env.Config, provtest.Logger(t))
		started <- result{svc, err}
	}()
	h := waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthStarting)
	if h.Instance != "health-1" {
		t.Errorf("health names instance %q, want health-1", h.Instance)
	}
	env.Restart(t)
	r := <-started
	if r.err != nil {
		t.Fatal(r.err)
	}
	svc := r.svc
	defer svc.Stop()
	if h := waitHealth(t, addr, http.StatusOK, api.HealthOK); len(h.Problems) != 0 {
		t.Errorf("ok with problems %v", h.Problems)
	}

	env.Server.Stop()
	h = waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthUnavailable)
	if len(h.Problems) == 0 || !strings.Contains(h.Problems[0], "NATS connection provisioner") {
		t.Errorf("NATS away: problems %q, want the connection named", h.Problems)
	}
	env.Restart(t)
	waitHealth(t, addr, http.StatusOK, api.HealthOK)

	// The bucket deleted under the instance, by a user of the service's
	// account that may (an operator with `nats kv del`).
	full := env.Connect(t, env.ServiceAccountCreds(t, "operator", jwt.Permissions{}))
	js, err := jetstream.New(full)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, env.Config.KVBucket); err != nil {
		t.Fatal(err)
	}
	h = waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthUnavailable)
	if len(h.Problems) != 1 || !strings.HasPrefix(h.Problems[0], "store: ") || !strings.Contains(h.Problems[0], "restart") {
		t.Errorf("bucket deleted: problems %q, want the store's, naming the restart", h.Problems)
	}
	// The store's own words (the bucket's name) stay with prov.status.
	if strings.Contains(h.Problems[0], env.Config.KVBucket) {
		t.Errorf("the unauthenticated endpoint names the bucket: %q", h.Problems[0])
	}

	// The endpoint says stopping while a stop (here, with NATS away) is
	// under way. The stop is held there until the test has seen it: with
	// NATS away and the store refusing, it can end before a poll.
	env.Server.Stop()
	seen := make(chan struct{})
	svc.HoldStop(func() {
		select {
		case <-seen:
		case <-time.After(20 * time.Second):
		}
	})
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop() }()
	waitHealth(t, addr, http.StatusServiceUnavailable, api.HealthStopping)
	close(seen)
	if err := <-stopped; err != nil {
		t.Logf("stop: %v", err)
	}
	if code, _ := getHealth(t, addr); code != 0 {
		t.Errorf("a stopped service's endpoint answered %d", code)
	}
}

// TestHealthListenTaken: a health_listen address something else holds
// refuses the start at once, naming it, before anything connects.
func TestHealthListenTaken(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env.Config.HealthListen = ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := service.Start(ctx, env.Config, slog.New(slog.DiscardHandler))
	if err == nil {
		svc.Stop()
		t.Fatal("the service started on a taken health_listen")
	}
	if !strings.Contains(err.Error(), "health_listen "+ln.Addr().String()) {
		t.Errorf("start: %v, want health_listen named", err)
	}
}

// TestHealthRequestUnderWayAtStopIsAnswered: a health request whose
// answer is being made when the stop closes the endpoint gets it, as the
// endpoint's doc says. http.Server.Close cut its connection: the
// healthcheck saw a reset, not a stopping instance.
func TestHealthRequestUnderWayAtStopIsAnswered(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	addr := fmt.Sprintf("127.0.0.1:%d", provtest.FreePort(t))
	env.Config.HealthListen = addr
	svc := env.Start(t)
	waitHealth(t, addr, http.StatusOK, api.HealthOK)

	// The next request is held in its handler until the endpoint closes.
	entered, release := make(chan struct{}), make(chan struct{})
	svc.HoldHealth(func() {
		close(entered)
		<-release
	})
	type answer struct {
		code int
		h    api.HealthReply
	}
	answered := make(chan answer, 1)
	go func() {
		code, h := getHealth(t, addr)
		answered <- answer{code, h}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- svc.Stop() }()
	// The endpoint is closing once it takes no new connection.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the endpoint still takes connections 15 s into the stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if a := <-answered; a.code != http.StatusServiceUnavailable || a.h.Status != api.HealthStopping {
		t.Errorf("the request under way at the stop: %d %+v, want 503 stopping (0: no answer)", a.code, a.h)
	}
	if err := <-stopped; err != nil {
		t.Errorf("stop: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestHealthCommand: `provisioner health` is a container's healthcheck
// (the image has no shell or HTTP client): exit 0 while the instance
// serves, 1 when its endpoint says it does not (NATS away), 2 when nothing
// or something else answers, or the flags are wrong.
func TestHealthCommand(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	port := provtest.FreePort(t)
	env.Config.HealthListen = fmt.Sprintf(":%d", port) // every interface: asked on the loopback
	env.Start(t)

	raw, err := os.ReadFile(env.Init.Config)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	fields["health_listen"] = env.Config.HealthListen
	raw, _ = json.Marshal(fields)
	cfgPath := filepath.Join(env.Dir, "health.json")
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	noHealth := env.Init.Config
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	defer other.Close()
	// Another service's health, which says ok in its own format.
	otherOK := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(`{"status":"ok"}`)) }))
	defer otherOK.Close()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)

	check := func(t *testing.T, args []string, exit int, stdout, stderr string) {
		t.Helper()
		var out, errOut bytes.Buffer
		err := run(context.Background(), append([]string{"health"}, args...), &out, &errOut)
		if got := exitCode(err); got != exit {
			t.Errorf("health %v: exit %d (%v), want %d", args, got, err, exit)
		}
		msg := errOut.String()
		if err != nil {
			msg += err.Error()
		}
		if !strings.Contains(out.String(), stdout) || !strings.Contains(msg, stderr) {
			t.Errorf("health %v: stdout %q, errors %q; want %q and %q", args, out.String(), msg, stdout, stderr)
		}
	}
	check(t, []string{"--config", cfgPath}, 0, `"status":"ok"`, "")
	check(t, []string{"--url", url}, 0, `"status":"ok"`, "")
	check(t, []string{"--config", noHealth}, 2, "", "sets no health_listen")
	check(t, []string{"--url", other.URL}, 2, "", "not a provisioner's health")
	check(t, []string{"--url", otherOK.URL}, 2, "", "not a provisioner's health")
	check(t, []string{"--url", fmt.Sprintf("http://127.0.0.1:%d/healthz", provtest.FreePort(t))}, 2, "", "connection refused")
	check(t, []string{"--url", fmt.Sprintf("127.0.0.1:%d", port)}, 2, "", fmt.Sprintf("e.g. http://127.0.0.1:%d/healthz", port))
	check(t, nil, 2, "", "one of --config and --url")
	check(t, []string{"--config", cfgPath, "--url", url}, 2, "", "one of --config and --url")

	env.Server.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out bytes.Buffer
		err := run(context.Background(), []string{"health", "--url", url}, &out, &bytes.Buffer{})
		if exitCode(err) == 1 {
			if !strings.Contains(err.Error(), "unavailable: NATS connection") {
				t.Errorf("NATS away: %v, want the connection named", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NATS away: health still %v (exit %d)", err, exitCode(err))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthExampleOnTheContainerConfig: health's own example,
// `provisioner health --config /deploy/config.container.json`, is run in a
// provisioner container of docker-compose.yml against the config init
// wrote for it. That config set no health_listen (docker-compose.yml gives
// --health-listen on serve's command line), so the example failed with
// "sets no health_listen" whatever the instance's state. It must ask the
// endpoint the compose file's serve listens on.
func TestHealthExampleOnTheContainerConfig(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(compose), `"--health-listen", "`)
	listen, _, _ := strings.Cut(after, `"`)
	if !ok || listen == "" {
		t.Fatal("docker-compose.yml gives serve no --health-listen")
	}
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"health", "--config", filepath.Join(res.Dir, bootstrap.ContainerConfigFile), "--timeout", "1s"}, &out, &errOut)
	if err == nil {
		t.Skipf("something answers on %s here", listen)
	}
	if !strings.Contains(err.Error(), "http://"+listen+"/healthz") {
		t.Errorf("health --config %s: %v; want it to ask http://%s/healthz, docker-compose.yml's endpoint", bootstrap.ContainerConfigFile, err, listen)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/config"
)

// unhealthyError is a health endpoint that answered, but not ok. main exits
// 1 for it, as for a refused request.
type unhealthyError struct{ msg string }

func (e *unhealthyError) Error() string { return e.msg }

// runHealth asks an instance's health endpoint, for a container
// healthcheck: the image has no shell or HTTP client of its own.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newCommand("health", "ask a running instance's health endpoint (health_listen); exit 0 when it serves, 1 when it answers that it does not, 2 when it does not answer",
		"provisioner health --config FILE | --url URL",
		"provisioner health --config /deploy/config.container.json")
	path := fs.String("config", "", "the instance's config `FILE`: its health_listen is asked, on this machine")
	url := fs.String("url", "", "the endpoint's `URL` (http://127.0.0.1:8081/healthz)")
	timeout := 3 * time.Second
	fs.Var((*positiveDuration)(&timeout), "timeout", "how long to wait for the answer, a `DURATION`")
	if err := fs.parse(args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case (*path == "") == (*url == ""):
		fs.printHelp(stderr)
		return errors.New("health: give one of --config and --url")
	case *path != "":
		cfg, err := config.Load(*path)
		if err != nil {
			return err
		}
		if cfg.HealthListen == "" {
			return fmt.Errorf("health: %s sets no health_listen", *path)
		}
		*url = healthURL(cfg.HealthListen)
	case !strings.HasPrefix(*url, "http://") && !strings.HasPrefix(*url, "https://"):
		// "127.0.0.1:8081" read as a URL fails with Go's "first path
		// segment in URL cannot contain colon", which says nothing of
		// what to give.
		return fmt.Errorf("health: --url %q is not an http:// or https:// URL; give the endpoint's whole URL, e.g. http://%s/healthz", *url, strings.TrimSuffix(*url, "/healthz"))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("health: %s: %w", *url, err)
	}
	var h api.HealthReply
	if err := json.Unmarshal(body, &h); err != nil || h.Status == "" || h.Instance == "" {
		return fmt.Errorf("health: %s answered %s, not a provisioner's health: %.200q", *url, resp.Status, body)
	}
	stdout.Write(body)
	if resp.StatusCode != http.StatusOK || h.Status != api.HealthOK {
		msg := fmt.Sprintf("instance %s is %s", h.Instance, h.Status)
		if len(h.Problems) > 0 {
			msg += ": " + strings.Join(h.Problems, "; ")
		}
		return &unhealthyError{msg}
	}
	return nil
}

// healthURL is the URL of the health endpoint listening on addr, asked
// from the same machine: an address for every interface is asked on the
// loopback.
func healthURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + api.HealthPath
}

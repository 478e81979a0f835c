package service_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestStartWarnsOfAShortResponseTTL: creds from an init before responses
// had a ttl let the server refuse a reply later than two minutes after
// its request (the server's default), which a request_timeout past that
// allows: its caller, told nothing, waits out its timeout for a change
// that was made. The start says so, naming the creds and what to do;
// with init's creds of now, it says nothing.
func TestStartWarnsOfAShortResponseTTL(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	env.Config.RequestTimeout = config.Duration(3 * time.Minute)
	start := func() string {
		t.Helper()
		logs := &syncBuf{}
		svc, err := service.Start(context.Background(), env.Config, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		svc.Stop()
		return logs.String()
	}
	if logs := start(); strings.Contains(logs, "allow_responses") {
		t.Errorf("init's creds: the start warned of their response ttl:\n%s", logs)
	}
	env.Config.NATSCreds = provtest.SystemUserCreds(t, env.Dir, env.Init.SystemAccount, "provisioner", func(uc *jwt.UserClaims) {
		uc.Permissions = bootstrap.ProvisionerPermissions(env.Config.SubjectPrefix)
		uc.Resp = &jwt.ResponsePermission{MaxMsgs: 1}
	})
	logs := start()
	var warned bool
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "allow_responses") && strings.Contains(l, "nats_creds") && strings.Contains(l, "2m0s") && strings.Contains(l, "3m0s") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("creds that allow a reply for two minutes under a request_timeout of 3m: no warning naming them:\n%s", logs)
	}
}

// TestStartWarnsOfARequestTimeoutShorterThanItsPushes: a request_timeout
// under two resolver_timeouts (a delete's two claims requests, each
// waiting that long for a server that does not answer) and the wait for
// a version's second answers such changes 504 while they go on, and may
// land: the start says so, naming both; the defaults say nothing.
func TestStartWarnsOfARequestTimeoutShorterThanItsPushes(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	start := func() string {
		t.Helper()
		logs := &syncBuf{}
		svc, err := service.Start(context.Background(), env.Config, slog.New(slog.NewTextHandler(logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		svc.Stop()
		return logs.String()
	}
	if logs := start(); strings.Contains(logs, "request_timeout") && strings.Contains(logs, "level=WARN") {
		t.Errorf("the default timeouts: the start warned:\n%s", logs)
	}
	env.Config.ResolverTimeout = config.Duration(5 * time.Second)
	env.Config.RequestTimeout = config.Duration(6 * time.Second)
	var warned bool
	for _, l := range strings.Split(start(), "\n") {
		if strings.Contains(l, "level=WARN") && strings.Contains(l, "request_timeout=6s") && strings.Contains(l, "resolver_timeout=5s") {
			warned = true
		}
	}
	if !warned {
		t.Error("request_timeout 6s with resolver_timeout 5s: no warning naming both")
	}
}

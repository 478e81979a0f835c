package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestServeRefusesAMalformedNATSURL: a nats_url that is no URL (a typo in
// the port, a password with a space) is a configuration error, not a
// server that is not up yet. nats.Connect failed with url.Parse's error,
// which quotes the whole URL, password included; it was taken for a
// server not there yet, so serve retried forever and logged the password
// at every try (RedactURL, unable to parse it, left it as it was too).
// It is refused at once, and nothing it says holds the password.
func TestServeRefusesAMalformedNATSURL(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"nats://prov:s3cretpw@127.0.0.1:42x22",
		"nats://127.0.0.1:4222, nats://prov:s3cretpw@[::1:4222",
		"nats://prov:s3cret pw@127.0.0.1:4222",
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var errOut provtest.SyncBuffer
		err := run(ctx, []string{"serve", "--config", res.Config, "--nats-url", u}, &errOut, &errOut)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut {
			t.Errorf("serve --nats-url %q: %v (timed out: %v), want a refusal at once\n%s", u, err, timedOut, errOut.String())
			continue
		}
		if !strings.Contains(err.Error(), "nats_url") {
			t.Errorf("serve --nats-url %q: %v, want nats_url named", u, err)
		}
		for _, out := range []string{err.Error(), errOut.String()} {
			if strings.Contains(out, "s3cret") {
				t.Errorf("serve --nats-url %q shows the password:\n%s", u, out)
			}
		}
	}
}

// TestServeRefusesAnEmptyOverride: `serve --nats-url "$NATS_URL"` with the
// variable unset, or --store-dir "" / --health-listen "" (an operator
// turning the config's endpoint off), was taken as the flag left out: the
// config's value was used without a word, and serve went on to connect
// there. init and dev refuse a flag given empty; serve does too, naming
// it, before it connects.
func TestServeRefusesAnEmptyOverride(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--nats-url", "--store-dir", "--health-listen", "--config"} {
		args := []string{"serve", "--config", res.Config, flag, ""}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var errOut provtest.SyncBuffer
		err := run(ctx, args, &errOut, &errOut)
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || !strings.Contains(err.Error(), flag+` ""`) {
			t.Errorf("serve %s \"\": %v (timed out: %v), want a refusal at once naming %s", flag, err, timedOut, flag)
		}
	}
}

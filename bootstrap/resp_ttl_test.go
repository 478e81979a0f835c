package bootstrap_test

import (
	"os"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/provtest"
)

// TestLateReplyAllowed: the service answers a request once its work is
// done, which request_timeout bounds (up to config.MaxDuration; its
// default is 4 resolver timeouts and 5 s, past two minutes from a
// resolver_timeout of 29 s), after any wait behind max_inflight. The
// creds init wrote allowed responses (allow_responses) without a ttl,
// which the server takes as two minutes: a reply later than that (an
// operator.rotate of many accounts under a longer request_timeout) was
// refused by the server, and the caller, told nothing, waited out its
// timeout for a change that was made. Shown once with a reply 2m5s late
// (it failed "nats: timeout", the server logging a permissions
// violation); kept here as the creds' ttl, and a late reply through a
// real server, which the long ttl must not break (read as already
// expired, say), so that the suite stays within its time.
func TestLateReplyAllowed(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	for _, creds := range []string{env.Init.ProvisionerCreds, env.Init.ServiceCreds} {
		data, err := os.ReadFile(creds)
		if err != nil {
			t.Fatal(err)
		}
		token, err := jwt.ParseDecoratedJWT(data)
		if err != nil {
			t.Fatal(err)
		}
		uc, err := jwt.DecodeUserClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if r := uc.Resp; r == nil || r.MaxMsgs != 1 || r.Expires < config.MaxDuration {
			t.Errorf("%s: allow_responses %+v; want one reply, allowed for at least request_timeout's maximum (%s)", creds, r, config.MaxDuration)
		}
	}

	prov := env.Connect(t, env.Init.ProvisionerCreds)
	const late = 2 * time.Second
	if _, err := prov.Subscribe("prov.slow", func(m *nats.Msg) {
		time.AfterFunc(late, func() { m.Respond([]byte("done")) })
	}); err != nil {
		t.Fatal(err)
	}
	if err := prov.Flush(); err != nil {
		t.Fatal(err)
	}
	admin := env.Admin(t)
	m, err := admin.Request("prov.slow", nil, late+10*time.Second)
	if err != nil {
		t.Fatalf("a reply sent %s after the request: %v", late, err)
	}
	if string(m.Data) != "done" {
		t.Fatalf("reply %q", m.Data)
	}
}

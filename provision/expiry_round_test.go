package provision_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestExpiresInIsNeverShortened: a JWT's expiry counts whole seconds, and
// "expires_in" was cut down to them: a user asked for 1500ms expired after
// as little as half a second, one asked for 1ms at once, and an account
// asked for 1500ms was valid for less than asked. Each expires no sooner
// than asked.
func TestExpiresInIsNeverShortened(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	before := time.Now()
	acc, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "brief", ExpiresIn: "1500ms"})
	if err != nil {
		t.Fatal(err)
	}
	ac, err := jwt.DecodeAccountClaims(acc.Account.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if exp := time.Unix(ac.Expires, 0); exp.Before(before.Add(1500 * time.Millisecond)) {
		t.Errorf("an account asked to expire in 1500ms from %s expires at %s", before.Format(time.StampMicro), exp.Format(time.StampMicro))
	}
	renew := "1h"
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "brief", ExpiresIn: &renew}); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"1ms", "1500ms"} {
		want, _ := time.ParseDuration(in)
		before := time.Now()
		_, uc := issue(t, d, api.CreateUserRequest{Account: "brief", Name: "u" + in, ExpiresIn: in})
		if exp := time.Unix(uc.Expires, 0); exp.Before(before.Add(want)) {
			t.Errorf("a user asked to expire in %s from %s expires at %s", in, before.Format(time.StampMicro), exp.Format(time.StampMicro))
		}
	}
}

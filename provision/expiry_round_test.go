package provision_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
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

// TestExpiresInTheServersCannotTimeIsRefused: nats-server times an expiry
// as a time.Duration of the seconds left, which overflows within a second
// or two of Go's longest duration: a user given it was signed and
// answered as valid for 292 years, and the server refused it at once as
// expired (an account so, expired at once). Such an "expires_in" is a
// 400; the longest one a user takes connects and stays connected.
func TestExpiresInTheServersCannotTimeIsRefused(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	longest := time.Duration(math.MaxInt64).String()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "forever", ExpiresIn: longest}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.create with expires_in %s: %v, want ErrInvalid", longest, err)
	}
	taken := (time.Duration(math.MaxInt64) - 2*time.Second).String()
	// An account's expiry has a tighter bound (TestAccountExpiryPastTheResolversStoreIsRefused).
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", ExpiresIn: &longest}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.update with expires_in %s: %v, want ErrInvalid", longest, err)
	}
	if _, err := d.svc.CreateUser(ctx, api.CreateUserRequest{Account: "acme", Name: "forever", ExpiresIn: longest}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("user.create with expires_in %s: %v, want ErrInvalid", longest, err)
	}
	creds, _ := issue(t, d, api.CreateUserRequest{Account: "acme", Name: "long", ExpiresIn: taken})
	nc := dial(t, env, creds)
	time.Sleep(time.Second)
	if !nc.IsConnected() {
		t.Errorf("a user of expires_in %s was disconnected: %v", taken, nc.LastError())
	}
}

// TestAccountExpiryPastTheResolversStoreIsRefused: a full resolver's store
// times the removal of an expired account JWT in Unix nanoseconds, which
// overflow past 2262-04-11: an account given an expiry past it was
// dropped from the store within a minute of each push (LOOKUP answered
// empty, a restarted server no longer had it), and every pass pushed it
// again. Such an "expires_in" is a 400; one within it is taken.
func TestAccountExpiryPastTheResolversStoreIsRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	past := "2200000h" // about 251 years
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "far", ExpiresIn: past}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.create with expires_in %s: %v, want ErrInvalid", past, err)
	}
	within := "1000000h" // about 114 years
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "acme", ExpiresIn: within}); err != nil {
		t.Fatalf("account.create with expires_in %s: %v", within, err)
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", ExpiresIn: &past}); !errors.Is(err, provision.ErrInvalid) {
		t.Errorf("account.update with expires_in %s: %v, want ErrInvalid", past, err)
	}
	// A user's JWT is not stored by the servers: only the duration bound
	// holds for it.
	issue(t, d, api.CreateUserRequest{Account: "acme", Name: "far", ExpiresIn: past})
}

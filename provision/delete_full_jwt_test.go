package provision_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestDeleteOfAnAccountAtTheJWTLimit: the disabled version a delete
// signs revokes every user, an entry the live version may not have. An
// account whose JWT is a few bytes under the limit must still be
// deletable: a delete refused "too large" leaves the account live, with
// no way to remove it but to edit it first.
func TestDeleteOfAnAccountAtTheJWTLimit(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.MaxJWTSize = limit })
	defer d.stop()
	ctx := context.Background()
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "full"}); err != nil {
		t.Fatal(err)
	}
	size := func() int {
		a, err := d.store.AccountByName(ctx, "full")
		if err != nil {
			t.Fatal(err)
		}
		return len(a.JWT)
	}
	// Grow the description until the JWT is as close to the limit as an
	// update takes: a character of it is 4/3 bytes of the JWT.
	n := (limit - size()) * 3 / 4
	for {
		desc := strings.Repeat("d", n)
		_, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "full", Description: &desc})
		if err == nil {
			break
		}
		if !errors.Is(err, provision.ErrInvalid) || n == 0 {
			t.Fatal(err)
		}
		n--
	}
	t.Logf("live JWT %d bytes, limit %d", size(), limit)
	a, err := d.store.AccountByName(ctx, "full")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := d.svc.DeleteAccount(ctx, api.AccountRequest{Account: "full"})
	if err != nil {
		t.Fatalf("delete of an account %d bytes under the JWT limit: %v", limit-size(), err)
	}
	t.Logf("deleted: phase %s", rep.Phase)
	// Whatever the phase, no server holds a live version.
	for _, token := range d.lookupAll(t, a.PublicKey) {
		if token == "" {
			continue // deleted there
		}
		c, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if _, all := c.Revocations[jwt.All]; !all || c.Limits.Conn != 0 {
			t.Errorf("a server holds a version of the deleted account that is not disabled: %+v", c.Limits)
		}
	}
}

package provision_test

import (
	"context"
	"testing"

	"github.com/nats-io/jwt/v2"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestExportsOfTheRequestAreNotReordered: the account JWT's encoder sorts
// its exports in place, and the service signed the request's own slice: a
// Go caller that reused its exports for the next request found them in
// another order than it built them.
func TestExportsOfTheRequestAreNotReordered(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil)
	defer d.stop()
	ctx := context.Background()
	exports := jwt.Exports{
		{Name: "z", Subject: "z.>", Type: jwt.Stream},
		{Name: "a", Subject: "a.>", Type: jwt.Stream},
	}
	if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: "alpha", Exports: exports}); err != nil {
		t.Fatal(err)
	}
	if exports[0].Subject != "z.>" || exports[1].Subject != "a.>" {
		t.Fatalf("create reordered the caller's exports: %s, %s", exports[0].Subject, exports[1].Subject)
	}
	again := jwt.Exports{
		{Name: "y", Subject: "y.>", Type: jwt.Stream},
		{Name: "b", Subject: "b.>", Type: jwt.Stream},
	}
	if _, err := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "alpha", Exports: &again}); err != nil {
		t.Fatal(err)
	}
	if again[0].Subject != "y.>" || again[1].Subject != "b.>" {
		t.Fatalf("update reordered the caller's exports: %s, %s", again[0].Subject, again[1].Subject)
	}
}

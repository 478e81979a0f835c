package provision_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestOversizeChangeFailsAlone: an update that makes the account JWT larger
// than the servers take joins a version with a revoke; the update must fail
// alone, as an invalid one does (TestInvalidChangeFailsAlone).
func TestOversizeChangeFailsAlone(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.MaxJWTSize = 8 << 10 })
	defer d.stop()
	ctx := context.Background()
	revErr := revokeInAVersion(t, d)
	var tags []string
	for i := range 400 {
		tags = append(tags, fmt.Sprintf("tag-%d-%s", i, strings.Repeat("x", 24)))
	}
	_, uerr := d.svc.UpdateAccount(ctx, api.UpdateAccountRequest{Account: "acme", Tags: &tags})
	rerr := <-revErr
	t.Logf("oversize update: %v", uerr)
	t.Logf("innocent revoke: %v", rerr)
	if uerr == nil {
		t.Fatal("the oversize update succeeded")
	}
	if rerr != nil {
		t.Errorf("the revoke failed because of another caller's oversize update: %v", rerr)
	}
}

package provision_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// withGoneServer lists, besides the servers the resolver knows, one that
// went down and is still expected.
type withGoneServer struct{ provision.Resolver }

func (r withGoneServer) Servers() []provision.Server {
	return append(r.Resolver.Servers(), provision.Server{Name: "zz-gone", ID: "NZZGONE"})
}

// TestRotateRefusalSaysHowAServerIsForgotten: a rotation refused for a
// server that is down said it must run with the new operator JWT "(or
// be forgotten)", without saying how a server is forgotten.
func TestRotateRefusalSaysHowAServerIsForgotten(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	keyPath := nextSigningKey(t, env)
	d := newDomain(t, env, func(r provision.Resolver) provision.Resolver { return withGoneServer{r} }, func(c *provision.Config) {
		c.NextOperator = func() (*provision.Operator, error) {
			return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), keyPath)
		}
	})
	defer d.stop()
	waitUp(t, d)
	_, err := d.svc.RotateOperator(context.Background(), api.RotateOperatorRequest{})
	if err == nil || !strings.Contains(err.Error(), "zz-gone") {
		t.Fatalf("rotate with zz-gone down: %v, want a refusal naming it", err)
	}
	for _, want := range []string{"server_forget_after", "restart"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say how a server is forgotten (%q): %v", want, err)
		}
	}
}

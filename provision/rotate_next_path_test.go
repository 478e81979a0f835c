package provision_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestRotateOperatorHidesTheNextKeyPath: an operator.rotate whose
// operator_signing_key_next cannot be used (the file moved, or holds no
// seed) is refused, and its description, which goes to the caller, names
// neither the seed file's path nor its directory: they are the
// deployment's secrets, told to the log only.
func TestRotateOperatorHidesTheNextKeyPath(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	secrets := filepath.Join(t.TempDir(), "secret-keys-dir")
	if err := os.Mkdir(secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(secrets, "junk-next.nk")
	if err := os.WriteFile(junk, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(secrets, "missing-next.nk"), junk} {
		d := newDomain(t, env, nil, func(c *provision.Config) {
			c.NextOperator = func() (*provision.Operator, error) {
				return provision.LoadOperator(filepath.Join(env.Dir, bootstrap.OperatorJWTFile), path)
			}
		})
		_, err := d.svc.RotateOperator(context.Background(), api.RotateOperatorRequest{})
		if !errors.Is(err, provision.ErrInvalid) {
			t.Fatalf("%s: got %v, want ErrInvalid", filepath.Base(path), err)
		}
		if strings.Contains(err.Error(), "secret-keys-dir") || strings.Contains(err.Error(), env.Dir) {
			t.Errorf("the description names the seed file's path: %v", err)
		}
		if !strings.Contains(err.Error(), "operator_signing_key_next") {
			t.Errorf("the description does not name operator_signing_key_next: %v", err)
		}
		d.stop()
	}
}

package service_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestStartNamesTheSealKeyFieldThatIsWrong: a seal_key_previous entry that
// is missing, or holds no curve seed (a rotation's old key moved away, or
// the wrong file listed), stopped the start with "seal_key: seal key:
// ...", naming seal_key, whose file is fine: an operator mid-rotation
// checks the current key. The error names seal_key_previous; a bad
// seal_key is still named seal_key.
func TestStartNamesTheSealKeyFieldThatIsWrong(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	notCurve := filepath.Join(env.Dir, "not-curve.xk")
	if err := os.WriteFile(notCurve, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(env.Dir, "gone.xk")
	for _, tc := range []struct {
		name      string
		seal      string
		previous  []string
		wantField string
	}{
		{"previous missing", env.Config.SealKey, []string{missing}, "seal_key_previous"},
		{"previous not a curve seed", env.Config.SealKey, []string{notCurve}, "seal_key_previous"},
		{"current missing", missing, []string{env.Config.SealKey}, "seal_key"},
		{"current not a curve seed", notCurve, nil, "seal_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *env.Config
			cfg.SealKey, cfg.SealKeyPrevious = tc.seal, tc.previous
			svc, err := service.Start(context.Background(), &cfg, provtest.Logger(t))
			if err == nil {
				svc.Stop()
				t.Fatal("started")
			}
			if !strings.HasPrefix(err.Error(), tc.wantField+": ") {
				t.Errorf("error %q, want it to name %s first", err, tc.wantField)
			}
		})
	}
}

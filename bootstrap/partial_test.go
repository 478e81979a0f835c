package bootstrap_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
)

// TestInitFailingHalfWayLeavesNoDeployment: an Init that fails after it
// began writing (here: the directory's path is so long that the offline
// identity keys' paths pass PATH_MAX while config.json's does not; a full
// disk or a crash does the same) must not leave a deployment behind.
// Before, it left config.json, the creds and the signing key without the
// operator identity key, which is gone for good: `dev` takes config.json
// for a made deployment and runs it, and `init` refuses the directory.
func TestInitFailingHalfWayLeavesNoDeployment(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 4060-201 {
		dir = filepath.Join(dir, strings.Repeat("d", 200))
	}
	dir = filepath.Join(dir, strings.Repeat("e", 4060-len(dir)-1))
	if len(dir) != 4060 {
		t.Fatalf("dir is %d long", len(dir))
	}
	_, err := bootstrap.Init(bootstrap.Options{Dir: dir})
	if err == nil {
		t.Skip("Init succeeded: this system allows longer paths")
	}
	t.Logf("Init failed as wanted: %.80s...", err)
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if len(left) > 0 {
		if _, cerr := config.Load(filepath.Join(dir, bootstrap.ConfigFile)); cerr == nil {
			t.Errorf("a failed Init left a loadable config.json")
		}
		t.Fatalf("a failed Init left %d entries: %v", len(left), left)
	}
}

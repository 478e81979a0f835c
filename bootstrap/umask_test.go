//go:build unix

package bootstrap_test

import (
	"syscall"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestSecretFileModesUmask000: a umask that takes nothing away does not
// widen a secret file or the offline directory.
func TestSecretFileModesUmask000(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	for _, k := range storeKinds {
		t.Run(k.store, func(t *testing.T) {
			res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: k.store})
			if err != nil {
				t.Fatal(err)
			}
			checkModes(t, res.Dir, k.files)
		})
	}
}

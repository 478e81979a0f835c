package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
)

// TestRemoveSigningKeyKeepsTheContainerConfigsKeys: init --store jetstream
// writes two configs beside the operator JWT, config.json and
// config.container.json, which docker-compose.yml's provisioners run. A
// finish on config.json alone left config.container.json signing with the
// old key; remove-signing-key, checking only config.json by default, took
// the old key out, and the containers' provisioners, once the servers ran
// that JWT, signed with a key no server trusts (and did not start again).
// Every config init writes beside the JWT that names it is checked.
func TestRemoveSigningKeyKeepsTheContainerConfigsKeys(t *testing.T) {
	t.Parallel()
	res, opJWT, identity, oldKey, nextKey := rotationStart(t, bootstrap.StoreJetStream)
	container := filepath.Join(res.Dir, bootstrap.ContainerConfigFile)
	// config.json finished; the containers' config still on the old key,
	// the new one next (they sign with it, switched at a pass).
	setConfigKeys(t, res.Config, filepath.Base(nextKey), "")
	setConfigKeys(t, container, bootstrap.OperatorSigningKeyFile, filepath.Base(nextKey))
	before, _ := os.ReadFile(opJWT)
	_, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey)
	if err == nil || !strings.Contains(err.Error(), bootstrap.ContainerConfigFile) {
		t.Errorf("removing the old key while %s signs with it: %v; want it refused, naming that config", bootstrap.ContainerConfigFile, err)
	}
	if after, _ := os.ReadFile(opJWT); !bytes.Equal(before, after) {
		t.Fatal("the refused remove changed the operator JWT")
	}
	// Both finished: the old key goes.
	setConfigKeys(t, container, filepath.Base(nextKey), "")
	if _, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey); err != nil {
		t.Fatalf("removing the old key once neither config names it: %v", err)
	}
}

// TestRemoveSigningKeyUnusedContainerConfigSaysConfigFlag: README's
// rotation, followed on an init deployment that runs `serve --config
// deploy/config.json` and no containers, finishes config.json; step 5 then
// found config.container.json (written by init for docker-compose.yml, run
// by nobody) on the old key and refused, telling the operator to rotate
// the instance it configures. There is none: the way out is --config
// naming the configs the instances run, and the refusal says so.
func TestRemoveSigningKeyUnusedContainerConfigSaysConfigFlag(t *testing.T) {
	t.Parallel()
	res, opJWT, identity, oldKey, nextKey := rotationStart(t, bootstrap.StoreJetStream)
	// What finish leaves: config.json on the new key; config.container.json
	// as init wrote it.
	setConfigKeys(t, res.Config, filepath.Base(nextKey), "")
	_, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey)
	if err == nil || !strings.Contains(err.Error(), bootstrap.ContainerConfigFile) || !strings.Contains(err.Error(), "--config "+res.Config) {
		t.Fatalf("removing the old key while only the unused %s names it: %v; want it refused, naming that config and --config %s as the way out when no instance runs it", bootstrap.ContainerConfigFile, err, res.Config)
	}
	if _, _, err := runCmd(t, "operator", "remove-signing-key", "--identity", identity, "--operator-jwt", opJWT, "--key", oldKey, "--config", res.Config); err != nil {
		t.Fatalf("removing the old key with --config naming the finished config: %v", err)
	}
}

package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/service"
)

// TestFinishAsksEveryInstanceOfOneName: two instances on one bucket given
// the same explicit "instance" (one config copied to both), one on the new
// operator signing key, the other left on the old. Both answer
// prov.status.<instance>; finish asked that subject once and took the
// first answer, so whenever the new key's instance answered first it
// passed, and the other kept signing with a key the operator JWT is about
// to drop. Every instance of the name must be heard.
func TestFinishAsksEveryInstanceOfOneName(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	res := env.Init
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	identity := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
	if _, _, err := runCmd(t, "operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT); err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(res.Dir, "operator-signing-*.nk"))
	if len(keys) != 1 {
		t.Fatalf("add-signing-key wrote %v", keys)
	}
	env.Restart(t)
	oldOp, err := provision.LoadOperator(env.Config.OperatorJWT, env.Config.OperatorSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	oldOp.Signer.Wipe()
	newOp, err := provision.LoadOperator(env.Config.OperatorJWT, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	newOp.Signer.Wipe()
	var svcs []*service.Service
	for _, next := range []string{keys[0], ""} {
		cfg := *env.Config
		cfg.Instance = "same"
		cfg.OperatorSigningKeyNext = next
		// A start now refuses a name another process holds: started as
		// an older version was, which did not (or one that took the
		// name over from a paused holder).
		svc, err := service.Start(ctx, &cfg, provtest.Logger(t), service.WithUnclaimedInstance())
		if err != nil {
			t.Fatalf("start (next %q): %v", next, err)
		}
		t.Cleanup(func() { svc.Stop() })
		svcs = append(svcs, svc)
	}
	if rep, err := svcs[0].Provision.RotateOperator(ctx, api.RotateOperatorRequest{}); err != nil || len(rep.Failed) > 0 {
		t.Fatalf("rotate: %+v %v", rep, err)
	}
	adminCreds := filepath.Join(res.Dir, bootstrap.AdminCredsFile)
	// Which of the two answers first is up to the server: ask often.
	for i := range 10 {
		var out bytes.Buffer
		old, err := instancesSignWith(ctx, env.Config, adminCreds, newOp.SignerKey, &out)
		if err != nil {
			t.Fatalf("ask %d: %v", i, err)
		}
		if len(old) != 1 || !strings.Contains(old[0], "same") || !strings.Contains(old[0], oldOp.SignerKey) {
			t.Fatalf("ask %d: instances on the old key %q (%s), want the one named same on %s", i, old, strings.TrimSpace(out.String()), oldOp.SignerKey)
		}
	}
}

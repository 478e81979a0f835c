package service_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/service"
)

// TestSeedPastedForItsPathNeverInTheStartError: a seed pasted where the
// path of its file belongs, but not bare (in quotes as a shell export
// writes it, with a label, or as the decorated block of a creds or .nk
// file), passed Load's check, which decoded the path's last element as a
// whole. The start then failed with "open DIR/'SO...': no such file or
// directory": the seed in the error, which the command prints and a
// container's log keeps.
func TestSeedPastedForItsPathNeverInTheStartError(t *testing.T) {
	dir := t.TempDir()
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	signing, _ := nkeys.CreateOperator()
	signingPub, _ := signing.PublicKey()
	signingSeed, _ := signing.Seed()
	sys, _ := nkeys.CreateAccount()
	sysPub, _ := sys.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.SigningKeys.Add(signingPub)
	oc.SystemAccount = sysPub
	token, err := oc.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "operator.jwt"), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	decorated, err := jwt.DecorateSeed(signingSeed)
	if err != nil {
		t.Fatal(err)
	}
	seed := string(signingSeed)
	for name, value := range map[string]string{
		"quoted":    "'" + seed + "'",
		"labelled":  "seed: " + seed,
		"decorated": string(decorated),
	} {
		t.Run(name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{
				"nats_url":             "nats://127.0.0.1:1",
				"nats_creds":           "provisioner.creds",
				"operator_jwt":         "operator.jwt",
				"operator_signing_key": value,
				"store_dir":            "store",
			})
			path := filepath.Join(dir, "config-"+name+".json")
			if err := os.WriteFile(path, body, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				if strings.Contains(err.Error(), seed) {
					t.Fatalf("Load's error shows the seed: %v", err)
				}
				if !strings.Contains(err.Error(), `"operator_signing_key"`) {
					t.Errorf("Load's error does not name the field: %v", err)
				}
				return
			}
			s, err := service.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				s.Stop()
				t.Fatal("the service started with a seed for a path")
			}
			if strings.Contains(err.Error(), seed) {
				t.Fatalf("Load accepted it, and the start's error shows the seed: %v", err)
			}
		})
	}
}

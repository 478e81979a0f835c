package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/filestore"
	"github.com/natsprov/provisioner/provision"
)

// testAccount makes an account with real keys.
func testAccount(t *testing.T, name string) provision.Account {
	t.Helper()
	op, _ := nkeys.CreateOperator()
	id, _ := nkeys.CreateAccount()
	sk, _ := nkeys.CreateAccount()
	pub, _ := id.PublicKey()
	skPub, _ := sk.PublicKey()
	idSeed, _ := id.Seed()
	skSeed, _ := sk.Seed()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.SigningKeys.Add(skPub)
	token, err := ac.Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	return provision.Account{PublicKey: pub, Name: name, IdentitySeed: provision.Seed(idSeed), SigningKeys: []provision.SigningKey{{Seed: provision.Seed(skSeed)}}, JWT: token, Phase: provision.PhaseLive}
}

// storeWithAccounts writes a store with account "demo" in its snapshot
// and account "second" in its journal.
func storeWithAccounts(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	for _, name := range []string{"demo", "second"} {
		s, err := filestore.Open(dir, filestore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateAccount(context.Background(), testAccount(t, name)); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestStoreCommand(t *testing.T) {
	ctx := context.Background()
	good := storeWithAccounts(t)
	damaged := storeWithAccounts(t)
	j := filepath.Join(damaged, "journal.v2")
	data, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	data[8192+40] ^= 1 // in the first record: account "second"
	if err := os.WriteFile(j, data, 0o600); err != nil {
		t.Fatal(err)
	}
	salvaged := filepath.Join(t.TempDir(), "salvaged")
	// Two stores in one directory: a version 1 file beside the store,
	// which a start refuses though no file is damaged.
	twoStores := storeWithAccounts(t)
	if err := os.WriteFile(filepath.Join(twoStores, "snapshot.json"), []byte(`{"version":1,"accounts":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr error // nil: no error; errAny: some error
		stdout  string
		stderr  string
		exit    int // the process's exit code
	}{
		{"check an intact store", []string{"check", "--dir", good}, nil, "accounts  2 (2 live, 0 disabled, 0 deleted)", "", 0},
		{"check a damaged store", []string{"check", "--dir", damaged}, errAny, "DAMAGE    " + j + " at byte 8192", "", 3},
		{"check two stores in one directory", []string{"check", "--dir", twoStores}, errAny, "REFUSED   ", "", 3},
		{"salvage a damaged store", []string{"salvage", "--dir", damaged, "--to", salvaged}, nil, "The new store is in " + salvaged, "", 0},
		{"salvage into a store", []string{"salvage", "--dir", damaged, "--to", good}, errAny, "", "", 2},
		{"check without --dir", []string{"check"}, errAny, "", "--dir DIR", 2},
		// A --dir that exists but holds no store (a mistyped path, the
		// store's parent) has nothing to check: not a pass.
		{"check an empty directory", []string{"check", "--dir", t.TempDir()}, errAny, "format    empty", "", 2},
		{"check the store's parent directory", []string{"check", "--dir", filepath.Dir(good)}, errAny, "format    empty", "", 2},
		{"salvage without --to", []string{"salvage", "--dir", good}, errAny, "", "--to NEWDIR", 2},
		{"check help", []string{"check", "-h"}, flag.ErrHelp, "Example:", "", 0},
		{"salvage help", []string{"salvage", "-h"}, flag.ErrHelp, "Example:", "", 0},
		{"store help", []string{"-h"}, flag.ErrHelp, "provisioner store COMMAND", "", 0},
		{"no command", nil, errAny, "", "Usage:", 2},
		{"unknown command", []string{"fix"}, errAny, "", "Usage:", 2},
		{"a missing seal key file", []string{"check", "--dir", good, "--seal-key", filepath.Join(t.TempDir(), "none")}, errAny, "", "", 2},
		{"a stray argument", []string{"check", "--dir", good, "extra"}, errAny, "", "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(ctx, append([]string{"store"}, tt.args...), &stdout, &stderr)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("error %v; stderr:\n%s", err, stderr.String())
			case tt.wantErr == errAny && err == nil, tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderr, stderr.String())
			}
			if got := exitCode(err); got != tt.exit {
				t.Errorf("exit code %d, want %d", got, tt.exit)
			}
		})
	}
	// The salvaged store opens, with the account whose record is intact.
	s, err := filestore.Open(salvaged, filestore.Options{})
	if err != nil {
		t.Fatalf("the salvaged store does not open: %v", err)
	}
	defer s.Close()
	if _, err := s.AccountByName(ctx, "demo"); err != nil {
		t.Errorf("the salvaged store lacks the intact account: %v", err)
	}
	if _, err := s.AccountByName(ctx, "second"); err == nil {
		t.Error("the salvaged store has the account whose record is damaged")
	}
}

var errAny = errors.New("any error")

// TestSalvageRefusedPrintsNoReport: a salvage refused before it read the
// store (its target is not empty) prints no report, which would say
// "damage none" of a store it never read.
func TestSalvageRefusedPrintsNoReport(t *testing.T) {
	damaged := storeWithAccounts(t)
	j := filepath.Join(damaged, "journal.v2")
	data, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	data[8192+40] ^= 1
	if err := os.WriteFile(j, data, 0o600); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := os.WriteFile(filepath.Join(target, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"store", "salvage", "--dir", damaged, "--to", target}, &stdout, &stderr)
	if err == nil {
		t.Fatal("salvage into a non-empty directory succeeded")
	}
	if strings.Contains(stdout.String(), "damage    none") {
		t.Errorf("a refused salvage reports no damage of a damaged store:\n%s", stdout.String())
	}
}

// TestLocalChangeWhoseOutputCannotBeWrittenFails: the operator and store
// commands change files, then print what they did and what comes next.
// To a stdout that failed (a full disk) they exited 0 having printed
// nothing, where the client commands exit 2 saying what was done: the
// new signing key's file, or where the salvaged store went, was told
// nowhere. They exit 2, the report in the error.
func TestLocalChangeWhoseOutputCannotBeWrittenFails(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	identity := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
	opJWT := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)
	err = run(context.Background(), []string{"operator", "add-signing-key", "--identity", identity, "--operator-jwt", opJWT}, failingWriter{}, &bytes.Buffer{})
	keys, _ := filepath.Glob(filepath.Join(res.Dir, "operator-signing-*.nk"))
	if len(keys) != 1 {
		t.Fatalf("add-signing-key wrote %v", keys)
	}
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "Added signing key") || !strings.Contains(err.Error(), keys[0]) {
		t.Errorf("operator add-signing-key to a failing stdout: %v (exit %d), want exit 2 naming the key written", err, exitCode(err))
	}

	salvaged := filepath.Join(t.TempDir(), "salvaged")
	err = run(context.Background(), []string{"store", "salvage", "--dir", storeWithAccounts(t), "--to", salvaged}, failingWriter{}, &bytes.Buffer{})
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), "no space left") || !strings.Contains(err.Error(), "The new store is in "+salvaged) {
		t.Errorf("store salvage to a failing stdout: %v (exit %d), want exit 2 naming the new store", err, exitCode(err))
	}
}

package filestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// TestRotationLeavesNothingToTheOldKey: once a store was opened with a new
// seal key and the old one as previous, the new key alone opens it,
// whether the old seals were in the snapshot or only in the journal, and
// no file of the store holds a value sealed by the old key.
func TestRotationLeavesNothingToTheOldKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldSeed, newSeed := newSealSeed(t), newSealSeed(t)
	oldKey, err := seal.New(oldSeed)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, Options{Seal: oldKey})
	fill(t, s, "snap")
	closeStore(t, s)
	s = open(t, dir, Options{Seal: oldKey})
	// Only in the journal: a create, an update, a removal.
	a := newAccount(t, "journal")
	rev, err := s.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	a.SigningKeys = append(a.SigningKeys, newAccount(t, "x").SigningKeys...)
	a.JWT = accountJWT(t, a.PublicKey, a.Name, mustPub(t, a.SigningKeys[0].Seed), mustPub(t, a.SigningKeys[1].Seed))
	if _, err := s.UpdateAccount(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.CreateAccount(ctx, newAccount(t, fmt.Sprint("j", i))); err != nil {
			t.Fatal(err)
		}
	}
	want := dumpOf(t, s)
	closeStore(t, s)

	rotated, err := seal.New(newSeed, oldSeed)
	if err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{Seal: rotated})
	assertDump(t, dumpOf(t, s), want)
	closeStore(t, s)

	oldPub := oldKey.PublicKey()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data := readFile(t, filepath.Join(dir, e.Name()))
		if bytes.Contains(data, []byte(oldPub)) {
			t.Errorf("%s still holds a value sealed by the old key", e.Name())
		}
	}
	newOnly, err := seal.New(newSeed)
	if err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{Seal: newOnly})
	if err != nil {
		t.Fatalf("Open with the new key alone: %v", err)
	}
	assertDump(t, dumpOf(t, s), want)
	if _, err := s.Account(ctx, a.PublicKey); errors.Is(err, provision.ErrNotFound) {
		t.Error("the journal's account is gone")
	}
	closeStore(t, s)
}

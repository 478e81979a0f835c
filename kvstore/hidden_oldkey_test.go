package kvstore

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/seal"
)

// TestOpenVoidsAHiddenRecordSealedWithADroppedKey: the record of a create
// that lost its name (never shown), left by a crash, sealed with a seal key
// since dropped. Open refused the whole bucket for it ("account records
// cannot be read; a seal key rotated away must be given as a previous
// key"): every start failed for a record no request can see, and an
// operator without the old key had nothing to give. Its name is in clear:
// Open now takes it for what it is, hidden, and its sweep removes it.
func TestOpenVoidsAHiddenRecordSealedWithADroppedKey(t *testing.T) {
	d := startDeployment(t, 1)
	ctx := bg(t)
	oldKey, oldSeed := newSealKey(t)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	newSeed, _ := kp.Seed()
	rotated, err := seal.New(newSeed, oldSeed)
	if err != nil {
		t.Fatal(err)
	}
	current, err := seal.New(newSeed)
	if err != nil {
		t.Fatal(err)
	}

	// An instance with the old key writes what becomes the lost create.
	s1 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: oldKey})
	lost := newAccount(t, "lost")
	if _, err := s1.CreateAccount(ctx, lost); err != nil {
		t.Fatal(err)
	}
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	// The winner, sealed with the new key.
	s2 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: rotated})
	winner := newAccount(t, "acme")
	if _, err := s2.CreateAccount(ctx, winner); err != nil {
		t.Fatal(err)
	}
	// As a crash leaves it: the old-key record is a create of "acme" whose
	// name entry points to the winner.
	e, err := s2.kv.Get(ctx, accountKey(lost.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	rec["name"] = "acme"
	data, _ := json.Marshal(rec)
	if _, err := s2.kv.Put(ctx, accountKey(lost.PublicKey), data); err != nil {
		t.Fatal(err)
	}
	if err := s2.kv.Delete(ctx, nameKey("lost")); err != nil {
		t.Fatal(err)
	}
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}

	// The old key is gone.
	octx, cancel := context.WithTimeout(ctx, 30e9)
	defer cancel()
	s3, err := Open(octx, d.connect(t, d.svcCreds), Options{Seal: current})
	if err != nil {
		t.Fatalf("open without the dropped key: %v, want the hidden record removed", err)
	}
	// Voided, as the sweep voids any create that lost its name: store
	// migrate does not call it an account the bucket removed.
	if m, err := s3.stream.GetLastMsgForSubject(ctx, s3.subject+accountKey(lost.PublicKey)); err != nil {
		t.Fatal(err)
	} else if (rawEntry{m: m}).Operation() == jetstream.KeyValuePut || m.Header.Get(voidedHeader) == "" {
		t.Errorf("the hidden record sealed with the dropped key: %v marker, voided %q; want it voided", (rawEntry{m: m}).Operation(), m.Header.Get(voidedHeader))
	}
	if got, err := s3.AccountByName(ctx, "acme"); err != nil || got.PublicKey != winner.PublicKey {
		t.Errorf("acme: %v %v, want the winner %s", got.PublicKey, err, winner.PublicKey)
	}
	if err := s3.Close(); err != nil {
		t.Fatal(err)
	}

	// An account the store shows, sealed with the dropped key, still
	// refuses the start.
	back, err := seal.New(oldSeed, newSeed)
	if err != nil {
		t.Fatal(err)
	}
	s4 := openStore(t, d.connect(t, d.svcCreds), Options{Seal: back})
	if _, err := s4.CreateAccount(ctx, newAccount(t, "shown")); err != nil {
		t.Fatal(err)
	}
	if err := s4.Close(); err != nil {
		t.Fatal(err)
	}
	if s5, err := Open(octx, d.connect(t, d.svcCreds), Options{Seal: current}); err == nil {
		s5.Close()
		t.Errorf("open without the key of a shown account's record succeeded, want it refused")
	}
}

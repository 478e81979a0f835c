package kvstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestRecordWithAnotherAccountsSeedIsDamage: an account record edited by
// hand so that its identity seed is another account's (copied, sealed, from
// that account's record: the seal key opens it) is damage, as the file
// store calls a seed that does not derive its public key. The store served
// it as the account's seed, for the service to sign the account's JWTs
// with another account's key; it now fails the reads of it, naming it, and
// an open refuses the bucket.
func TestRecordWithAnotherAccountsSeedIsDamage(t *testing.T) {
	d, s, opts := single(t)
	ctx := bg(t)
	a := newAccount(t, "victim")
	b := newAccount(t, "donor")
	for _, x := range []provision.Account{a, b} {
		if _, err := s.CreateAccount(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	read := func(pub string) map[string]any {
		e, err := s.kv.Get(ctx, accountKey(pub))
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	rec := read(a.PublicKey)
	rec["identity_seed"] = read(b.PublicKey)["identity_seed"]
	data, _ := json.Marshal(rec)
	rev, err := s.kv.Put(ctx, accountKey(a.PublicKey), data)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the damaged record reaches the mirror", func() bool {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.m.revs[accountKey(a.PublicKey)] >= rev
	})
	got, err := s.Account(ctx, a.PublicKey)
	if err == nil {
		t.Fatalf("Account of a record holding another account's seed: no error (seed of %s served: %v)", b.PublicKey, got.IdentitySeed == b.IdentitySeed)
	}
	if !strings.Contains(err.Error(), accountKey(a.PublicKey)) {
		t.Errorf("the error does not name the record: %v", err)
	}
	_, err = Open(ctx, d.connect(t, d.svcCreds), opts)
	if err == nil || errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("Open of a bucket holding a damaged record: %v, want a refusal", err)
	}
	t.Log(err)
}

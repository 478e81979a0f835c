package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsprov/provisioner/provision"
)

// TestLatestJWTOfAHiddenRevive: a revive (a tombstone made live again, as
// a delete's put-back does) loses its name to another instance's create
// between its claim and its record, and the server is down when it writes
// the tombstone back: the record stays live, hidden (its name entry points
// to the other account) until the next open writes the tombstone back.
// Account and AccountLatest do not show it; LatestJWT, what afterPush
// reads after every push, must not either, or the instance pushes that
// hidden live version to the servers, where it stays as an orphan.
func TestLatestJWTOfAHiddenRevive(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	// No reconnect buffer: a write while the server is down fails, and
	// does not land once it is back.
	sa := openStore(t, d.connect(t, d.svcCreds, nats.ReconnectBufSize(-1)), Options{Seal: key, Instance: "a", Timeout: time.Second})
	sb := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "b"})
	ctx := bg(t)
	a := newAccount(t, "contested")
	rev, err := sa.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = sa.UpdateAccount(ctx, tombstone(t, a, provision.PhaseDisabled, time.Now().Unix()), rev); err != nil {
		t.Fatal(err)
	}
	b := newAccount(t, "contested")
	sa.fault = func(p string) error {
		switch p {
		case "revive: name claimed":
			if _, err := sb.CreateAccount(ctx, b); err != nil {
				t.Errorf("b's create: %v", err)
			}
		case "revive: fenced out":
			d.nodes[0].emb.Stop()
		}
		return nil
	}
	revived := a
	revived.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+1)
	if _, err := sa.UpdateAccount(ctx, revived, rev); !errors.Is(err, provision.ErrConflict) {
		t.Fatalf("revive: %v, want ErrConflict (fenced out)", err)
	}
	sa.fault = nil
	d.restart(t, "n1")
	var aerr error
	eventually(t, 20*time.Second, "the store answers again", func() bool {
		// Until the connection is back, reads fail (without a reconnect
		// buffer, not as unavailable).
		_, aerr = sa.AccountLatest(ctx, a.PublicKey)
		return aerr == nil || errors.Is(aerr, provision.ErrNotFound)
	})
	if !errors.Is(aerr, provision.ErrNotFound) {
		t.Fatalf("AccountLatest of the hidden revive: %v, want ErrNotFound (the put-back did not fail?)", aerr)
	}
	got, err := sa.LatestJWT(ctx, a.PublicKey)
	if err == nil && got == revived.JWT {
		t.Errorf("LatestJWT returns the hidden revive's live JWT, which AccountLatest does not show: afterPush pushes it")
	} else if err != nil && !errors.Is(err, provision.ErrNotFound) {
		t.Errorf("LatestJWT of the hidden revive: %v, want ErrNotFound", err)
	}
}

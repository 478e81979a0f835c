package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestRemoveStaleKeepsUsers: a RemoveAccount whose revision is stale (another
// instance changed the account; this instance's mirror has not seen it yet)
// fails with ErrStale, and must change nothing: the live account keeps its
// users.
func TestRemoveStaleKeepsUsers(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "stale-remove")
	rev, err := sa.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "u")
	if err := sa.AddUser(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees the account and its user", func() bool {
		_, err := sb.User(ctx, u.PublicKey)
		return mirrorRevision(sb, a.PublicKey) == rev && err == nil
	})
	release := stallWatcher(t, sa, sb)
	defer release()
	// a changes the account; b's mirror still holds rev.
	a.Revision = rev
	a.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+10)
	if _, err := sa.UpdateAccount(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	if err := sb.RemoveAccount(ctx, a.PublicKey, rev); !errors.Is(err, provision.ErrStale) {
		t.Fatalf("RemoveAccount at a stale revision: %v, want ErrStale", err)
	}
	if _, err := sa.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the account after a stale remove: %v", err)
	}
	if _, err := sa.kv.Get(ctx, userKey(u.PublicKey)); err != nil {
		t.Fatalf("the user of a live account after a remove that failed with ErrStale: %v (want its record kept)", err)
	}
}

// TestAccountLatestAfterRemove: AccountLatest reads past the mirror; an
// account another instance removed is not found, even while this
// instance's watcher lags.
func TestAccountLatestAfterRemove(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, rev := createSeenThenStall(t, sa, sb, "latest-removed")
	if err := sa.RemoveAccount(ctx, a.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := sa.kv.Get(ctx, accountKey(a.PublicKey)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("record after remove: %v", err)
	}
	if got, err := sb.AccountLatest(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("AccountLatest of a removed account = %s at %d, %v; want ErrNotFound", got.PublicKey, got.Revision, err)
	}
}

// TestMigrateReviveOfATakenName: the source holds an account live, newer
// than the tombstone the bucket holds of it, and a different live account
// holds its name in the bucket. The doc: that is a conflict, reported with
// its users; Migrate must not stop with an error.
func TestMigrateReviveOfATakenName(t *testing.T) {
	d := startDeployment(t, 1)
	srcKey, _ := newSealKey(t)
	dstKey, _ := newSealKey(t)
	src := openStore(t, d.connect(t, d.svcCreds), Options{Seal: srcKey, Bucket: "filestore", Instance: "src"})
	dst := openStore(t, d.connect(t, d.svcCreds), Options{Seal: dstKey, Instance: "dst"})
	ctx := bg(t)
	now := time.Now().Unix()

	p := newAccount(t, "shared")
	p.JWT = accountJWTAt(t, p.PublicKey, p.Name, now+5)
	if _, err := src.CreateAccount(ctx, p); err != nil {
		t.Fatal(err)
	}
	// The bucket: p as an older tombstone, and q live with its name.
	old := p
	old.JWT = accountJWTAt(t, p.PublicKey, p.Name, now)
	rev, err := dst.CreateAccount(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.UpdateAccount(ctx, tombstone(t, p, provision.PhaseDeleted, now+1), rev); err != nil {
		t.Fatal(err)
	}
	q := newAccount(t, "shared")
	if _, err := dst.CreateAccount(ctx, q); err != nil {
		t.Fatal(err)
	}
	later := newAccount(t, "zzz-later")
	if _, err := src.CreateAccount(ctx, later); err != nil {
		t.Fatal(err)
	}
	r, err := Migrate(ctx, dst, src)
	if err != nil {
		t.Fatalf("Migrate: %v (want the taken name reported as a conflict)", err)
	}
	if r.Accounts.Conflicts != 1 || r.Accounts.Copied != 1 {
		t.Fatalf("report %+v, want one conflict and the later account copied", r)
	}
}

// TestOpenRefusesDiscardOld: a bucket whose stream discards its oldest
// messages at a limit drops account records silently, as a TTL would: Open
// must refuse it as it refuses a TTL.
func TestOpenRefusesDiscardOld(t *testing.T) {
	d := startDeployment(t, 1)
	key, _ := newSealKey(t)
	nc := d.connect(t, d.svcCreds)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	makeBucket(t, js, func(c *jetstream.StreamConfig) { c.Discard, c.MaxMsgs = jetstream.DiscardOld, 3 })
	ctx := bg(t)
	s, err := Open(ctx, nc, Options{Seal: key, Instance: "one"})
	if errors.Is(err, ErrBucketMismatch) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := newAccount(t, "first")
	if _, err := s.CreateAccount(ctx, first); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "c"} {
		if _, err := s.CreateAccount(ctx, newAccount(t, n)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.kv.Get(ctx, accountKey(first.PublicKey))
	t.Fatalf("Open accepted a discard-old bucket; the first account's record now: %v", err)
}

// TestLatestJWT: the JWT of an account's latest record, read past a mirror
// that lags another instance's update and removal; no record is
// ErrNotFound.
func TestLatestJWT(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	if _, err := sb.LatestJWT(ctx, newAccount(t, "never").PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("LatestJWT of an account never written: %v, want ErrNotFound", err)
	}
	a, rev := createSeenThenStall(t, sa, sb, "latest-jwt")
	a.Revision = rev
	a.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+10)
	rev2, err := sa.UpdateAccount(ctx, a, rev)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := sb.LatestJWT(ctx, a.PublicKey); err != nil || got != a.JWT {
		t.Fatalf("LatestJWT past a lagging mirror: %v; want the update's JWT", err)
	}
	if mirrorRevision(sb, a.PublicKey) != rev {
		t.Fatal("the watcher was not stalled: the test shows nothing")
	}
	if err := sa.RemoveAccount(ctx, a.PublicKey, rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.LatestJWT(ctx, a.PublicKey); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("LatestJWT of a removed account: %v, want ErrNotFound", err)
	}
}

// createSeenThenStall creates an account through sa, waits until sb's
// mirror holds it, then stalls sb's watcher until the test ends: sb's
// mirror lags whatever comes next.
func createSeenThenStall(t *testing.T, sa, sb *Store, name string) (provision.Account, uint64) {
	t.Helper()
	a := newAccount(t, name)
	rev, err := sa.CreateAccount(bg(t), a)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees the account", func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
	t.Cleanup(stallWatcher(t, sa, sb))
	return a, rev
}

// TestRemoveRacedKeepsUsers: another instance changes the account after
// RemoveAccount has read it at rev and before its conditional delete of
// the record. The remove fails with ErrStale and must have changed
// nothing: the account, changed, keeps its users.
func TestRemoveRacedKeepsUsers(t *testing.T) {
	_, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a := newAccount(t, "raced-remove")
	rev, err := sa.CreateAccount(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "u")
	if err := sa.AddUser(ctx, u, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "b sees the account", func() bool { return mirrorRevision(sb, a.PublicKey) == rev })
	sa.fault = func(p string) error {
		if p == "remove: record read" {
			// b changes the account (a rotation signing its tombstone
			// anew, say) while a removes it.
			b := a
			b.Revision = rev
			b.JWT = accountJWTAt(t, a.PublicKey, a.Name, time.Now().Unix()+10)
			if _, err := sb.UpdateAccount(ctx, b, rev); err != nil {
				t.Errorf("b's update during the remove: %v", err)
			}
		}
		return nil
	}
	if err := sa.RemoveAccount(ctx, a.PublicKey, rev); !errors.Is(err, provision.ErrStale) {
		t.Fatalf("RemoveAccount raced by an update: %v, want ErrStale", err)
	}
	if _, err := sa.kv.Get(ctx, accountKey(a.PublicKey)); err != nil {
		t.Fatalf("the account after a raced remove: %v", err)
	}
	if _, err := sa.kv.Get(ctx, userKey(u.PublicKey)); err != nil {
		t.Fatalf("the user of an account kept by a remove that failed with ErrStale: %v (want its record kept)", err)
	}
}

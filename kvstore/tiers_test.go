package kvstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestLimitsChangedBetweenFlatAndTiers: README tells the operator of a
// deployment made before the tiers to replace the service account's flat
// JetStream limits with tiers. A server keeps each stream in the tier it
// was created (or last recovered) under, so once the push takes the
// limits of that tier away, every write to the bucket is refused
// (JetStream's 10120) until the server is restarted, in either direction.
// The store's error says so, and after a restart the writes go on and an
// instance starts under either shape.
func TestLimitsChangedBetweenFlatAndTiers(t *testing.T) {
	t.Parallel()
	d, s, opts := single(t)
	ctx := bg(t)
	sys := d.connect(t, d.sysCreds)
	js, err := jetstream.New(d.connect(t, d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	push := func(jwt string, tiered bool) {
		t.Helper()
		if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(jwt), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "the pushed limits in force", func() bool {
			c, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			info, err := js.AccountInfo(c)
			return err == nil && (info.Limits.MaxStore == 0) == tiered
		})
	}
	n := 0
	write := func() error {
		n++
		_, err := s.CreateAccount(ctx, newAccount(t, "a"+string(rune('a'+n))))
		return err
	}
	owner := newAccount(t, "owner")
	if _, err := s.CreateAccount(ctx, owner); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		shape  string
		jwt    string
		tiered bool
	}{
		// Tiers that fit beside the flat 1 GiB in the server's 2 GB.
		{"tiers", accountJWTTiered(t, d.svcKeys[0], d.svcKeys[1], d.svcKeys[2], "SERVICE", 128<<20), true},
		{"flat limits", accountJWT(t, d.svcKeys[0], d.svcKeys[1], d.svcKeys[2], "SERVICE", true), false},
	} {
		push(step.jwt, step.tiered)
		err := write()
		if err == nil {
			t.Logf("a write after the change to %s was taken without a restart", step.shape)
		} else if !errors.Is(err, provision.ErrUnavailable) || !strings.Contains(err.Error(), "restart") {
			t.Fatalf("a write after the change to %s: %v, want ErrUnavailable saying to restart the servers", step.shape, err)
		}
		// A user acknowledged before its record is written is not given
		// up on: its creds are out, and only its record lets the service
		// find it to revoke.
		u := newUser(t, owner.PublicKey, "u-"+strings.ReplaceAll(step.shape, " ", "-"))
		acked := s.AddUser(ctx, u, false) == nil
		time.Sleep(4 * time.Second) // past the five attempts other failures get
		d.restart(t, "n1")
		eventually(t, 20*time.Second, "a write after the restart", func() bool { return write() == nil })
		if acked {
			eventually(t, 20*time.Second, "the acknowledged user's record stored", func() bool {
				s.amu.Lock()
				defer s.amu.Unlock()
				return len(s.pending) == 0
			})
			if _, err := s.User(ctx, u.PublicKey); err != nil {
				t.Fatalf("the user acknowledged while the bucket refused writes (%s): %v", step.shape, err)
			}
			packs, err := bucketPacks(ctx, s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bucketUserIn(ctx, s, packs, u.PublicKey); err != nil {
				t.Fatalf("the user acknowledged while the bucket refused writes (%s) is not in the bucket: %v", step.shape, err)
			}
		}
		opts.Instance = "after-" + strings.ReplaceAll(step.shape, " ", "-")
		openStore(t, d.connect(t, d.svcCreds), opts)
	}
}

// TestStartWaitsWhileTheBucketsTierHasNoLimits: once the service account's
// limits change between flat and tiered, every write to the bucket is
// refused (10120) until the servers restart. Open's write probe took that
// refusal, as any refusal but a 503, for "the bucket answers writes", so
// an instance started while every change it was asked for failed; Open
// now fails as unavailable, saying to restart the servers (the service
// waits on it, logging that).
func TestStartWaitsWhileTheBucketsTierHasNoLimits(t *testing.T) {
	d := startDeployment(t, 3)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Instance: "one"}
	s := openStore(t, d.connect(t, d.svcCreds), opts)
	ctx := bg(t)
	sys := d.connect(t, d.sysCreds)
	tiered := accountJWTTiered(t, d.svcKeys[0], d.svcKeys[1], d.svcKeys[2], "SERVICE", 128<<20)
	if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(tiered), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	n := 0
	eventually(t, 20*time.Second, "writes refused for the tier", func() bool {
		n++
		_, err := s.CreateAccount(ctx, newAccount(t, "a"+string(rune('a'+n))))
		return err != nil && strings.Contains(err.Error(), "restart")
	})
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	opts.Instance = "two"
	other, err := Open(c, d.connect(t, d.svcCreds), opts)
	if err == nil {
		other.Close()
		t.Fatal("an instance started while the bucket refused every write for want of its tier's limits")
	}
	if !errors.Is(err, provision.ErrUnavailable) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("Open while the bucket's tier has no limits: %v, want ErrUnavailable saying to restart the servers", err)
	}
}

// TestOpenRefusesWhenTheBucketsTierIsTakenOut: on a cluster, the tier of
// an existing bucket's replica count taken out of the account's limits
// (R3 here, the other tiers kept) makes every write refused (10120), as
// while limits changed between flat and tiered; but no restart mends it.
// Open said to restart the servers, unavailable, and the service waited
// on it for ever; it now fails with ErrNoJetStream naming the tier.
func TestOpenRefusesWhenTheBucketsTierIsTakenOut(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 3)
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Instance: "one", Replicas: 3}
	openStore(t, d.connect(t, d.svcCreds), opts)
	sys := d.connect(t, d.sysCreds)
	pub, _ := d.svcKeys[0].PublicKey()
	spub, _ := d.svcKeys[1].PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = "SERVICE"
	ac.SigningKeys.Add(spub)
	ac.Limits.JetStreamTieredLimits = jwt.JetStreamTieredLimits{}
	for _, r := range []string{"R1", "R2", "R4", "R5"} {
		ac.Limits.JetStreamTieredLimits[r] = jwt.JetStreamLimits{DiskStorage: 128 << 20, MemoryStorage: 8 << 20, Streams: -1, Consumer: -1}
	}
	tok, err := ac.Encode(d.svcKeys[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(tok), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // every server has the new limits
	c, cancel := context.WithTimeout(bg(t), 10*time.Second)
	defer cancel()
	opts.Instance = "two"
	other, err := Open(c, d.connect(t, d.svcCreds), opts)
	if err == nil {
		other.Close()
		t.Fatal("an instance started while the bucket's tier had no limits")
	}
	if !errors.Is(err, ErrNoJetStream) || !strings.Contains(err.Error(), "R3") || !strings.Contains(err.Error(), "--js-tier 3") {
		t.Fatalf("Open with the bucket's tier taken out: %v, want ErrNoJetStream naming R3 and --js-tier 3", err)
	}
}

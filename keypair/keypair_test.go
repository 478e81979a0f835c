package keypair_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/keypair"
)

// TestMatchesNkeys checks that a cached key pair is the same key as the
// nkeys one: same public key, and signatures each side verifies.
func TestMatchesNkeys(t *testing.T) {
	for _, create := range []func() (nkeys.KeyPair, error){nkeys.CreateOperator, nkeys.CreateAccount, nkeys.CreateUser} {
		ref, _ := create()
		seed, _ := ref.Seed()
		kp, err := keypair.FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ref.PublicKey()
		if got, _ := kp.PublicKey(); got != want {
			t.Fatalf("public key %s, want %s", got, want)
		}
		msg := []byte("claims")
		sig, _ := kp.Sign(msg)
		if err := ref.Verify(msg, sig); err != nil {
			t.Errorf("nkeys rejects our signature: %v", err)
		}
		sig2, _ := ref.Sign(msg)
		if err := kp.Verify(msg, sig2); err != nil {
			t.Errorf("we reject the nkeys signature: %v", err)
		}
		if err := kp.Verify([]byte("other"), sig2); err == nil {
			t.Errorf("a signature of other data verified")
		}
		p1, _ := ref.PrivateKey()
		p2, _ := kp.PrivateKey()
		if string(p1) != string(p2) {
			t.Errorf("private keys differ")
		}
	}
}

func TestCreateSignsJWTs(t *testing.T) {
	acct, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := keypair.Create(nkeys.PrefixByteUser)
	upub, _ := user.PublicKey()
	if !nkeys.IsValidPublicUserKey(upub) {
		t.Fatalf("Create(user) made %s", upub)
	}
	s0, _ := user.Seed()
	seed := string(s0)
	if ref, err := nkeys.FromSeed([]byte(seed)); err != nil {
		t.Fatal(err)
	} else if p, _ := ref.PublicKey(); p != upub {
		t.Fatalf("seed is of %s, not %s", p, upub)
	}
	token, err := jwt.NewUserClaims(upub).Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatalf("a JWT we signed does not verify: %v", err)
	}
	if apub, _ := acct.PublicKey(); c.Issuer != apub {
		t.Errorf("issuer %s, want %s", c.Issuer, apub)
	}
	user.Wipe()
	if s, _ := user.Seed(); string(s) == seed {
		t.Errorf("Wipe left the seed")
	}
}

func BenchmarkSign(b *testing.B) {
	seed, _ := func() ([]byte, error) { k, _ := nkeys.CreateAccount(); return k.Seed() }()
	ref, _ := nkeys.FromSeed(seed)
	kp, _ := keypair.FromSeed(seed)
	msg := make([]byte, 512)
	b.Run("nkeys", func(b *testing.B) {
		for b.Loop() {
			ref.Sign(msg)
		}
	})
	b.Run("keypair", func(b *testing.B) {
		for b.Loop() {
			kp.Sign(msg)
		}
	})
}

func TestPoolHandsOutDistinctKeys(t *testing.T) {
	p := keypair.NewPool(nkeys.PrefixByteUser, 16)
	seen := map[string]bool{}
	for range 100 {
		k, err := p.Get()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := k.PublicKey()
		if !nkeys.IsValidPublicUserKey(pub) {
			t.Fatalf("pool of user keys gave %s", pub)
		}
		if seen[pub] {
			t.Fatalf("key %s handed out twice", pub)
		}
		seen[pub] = true
	}
	p.Close()
	if k, err := p.Get(); err != nil || k == nil {
		t.Errorf("Get after Close must still make a key: %v", err)
	}
}

// TestPublicKeyOf: the public key of a seed this process made is the one
// it derived; of any other seed, the one nkeys derives; past the memory's
// bound, early seeds are derived again, rightly; a bad seed is an error
// that does not hold it.
func TestPublicKeyOf(t *testing.T) {
	first, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		t.Fatal(err)
	}
	firstSeed, _ := first.Seed()
	firstPub, _ := first.PublicKey()
	check := func(seed []byte, want string) {
		t.Helper()
		got, err := keypair.PublicKeyOf(seed)
		if err != nil || got != want {
			t.Fatalf("PublicKeyOf = %q, %v; want %q", got, err, want)
		}
	}
	check(firstSeed, firstPub)
	for _, mk := range []func() (nkeys.KeyPair, error){nkeys.CreateAccount, nkeys.CreateUser, nkeys.CreateCurveKeys} {
		kp, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		check(seed, pub)
	}
	for range keypair.MaxDerived + 1 {
		if _, err := keypair.Create(nkeys.PrefixByteAccount); err != nil {
			t.Fatal(err)
		}
	}
	check(firstSeed, firstPub)
	bad := []byte("SAAGARBAGEGARBAGEGARBAGEGARBAGEGARBAGEGARBAGEGARBAGEGARBA")
	if _, err := keypair.PublicKeyOf(bad); err == nil || strings.Contains(err.Error(), string(bad)) {
		t.Fatalf("a bad seed: %v", err)
	}
}

// BenchmarkPublicKeyOf: a seed this process made against one it did not.
func BenchmarkPublicKeyOf(b *testing.B) {
	made, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		b.Fatal(err)
	}
	madeSeed, _ := made.Seed()
	other, _ := nkeys.CreateAccount()
	otherSeed, _ := other.Seed()
	for _, bb := range []struct {
		name string
		seed []byte
	}{{"made here", madeSeed}, {"derived now", otherSeed}} {
		b.Run(bb.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := keypair.PublicKeyOf(bb.seed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPrintingShowsNoSecret: a key pair printed or logged by mistake shows
// its public key, never its seed or private key, in any form: %v of the
// struct printed the seed's bytes, which spell the seed.
func TestPrintingShowsNoSecret(t *testing.T) {
	ref, _ := nkeys.CreateAccount()
	seed, _ := ref.Seed()
	pub, _ := ref.PublicKey()
	kp, err := keypair.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("signing", "key", kp, "in", struct{ K *keypair.KeyPair }{kp})
	outs := []string{logged.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		outs = append(outs, fmt.Sprintf(verb, kp), fmt.Sprintf(verb, struct{ K *keypair.KeyPair }{kp}))
	}
	raw := fmt.Sprint(seed) // the seed's bytes as %v of a []byte shows them
	for _, out := range outs {
		if strings.Contains(out, string(seed)) || strings.Contains(out, raw[1:40]) || strings.Contains(out, fmt.Sprintf("%x", seed)[:40]) {
			t.Errorf("printed key pair shows its seed: %s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(kp), pub) {
		t.Errorf("printed key pair %q does not name its public key %s", fmt.Sprint(kp), pub)
	}
}

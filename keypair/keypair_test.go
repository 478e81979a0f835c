package keypair_test

import (
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

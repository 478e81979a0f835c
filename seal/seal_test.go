package seal_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/seal"
)

func curveSeed(t testing.TB) []byte {
	t.Helper()
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	old, cur, other := curveSeed(t), curveSeed(t), curveSeed(t)
	secret := []byte("SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM")

	oldKey, err := seal.New(old)
	if err != nil {
		t.Fatal(err)
	}
	byOld, err := oldKey.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(byOld, string(secret)) || !seal.IsSealed(byOld) {
		t.Fatalf("sealed value %q is not sealed", byOld)
	}

	// After a rotation the previous key still opens what it sealed.
	k, err := seal.New(cur, old)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open(byOld)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("open with previous key: %q, %v", got, err)
	}
	if k.Current(byOld) {
		t.Fatal("a value sealed by the previous key counts as current")
	}
	byCur, err := k.Seal(secret)
	if err != nil || !k.Current(byCur) {
		t.Fatalf("seal with the current key: %v", err)
	}

	otherKey, err := seal.New(other)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		key   *seal.Key
		value string
		want  error
	}{
		{"another key", otherKey, byCur, seal.ErrUnknownKey},
		{"plain seed", k, string(secret), seal.ErrNotSealed},
		{"changed byte", k, byCur[:len(byCur)-6] + "AAAA==", seal.ErrDamaged},
		{"bad base64", k, byCur + "!", seal.ErrNotSealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.key.Open(tt.value)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), string(secret)) {
				t.Fatal("error holds the secret")
			}
		})
	}
}

func TestLoadRefusesOtherKeys(t *testing.T) {
	dir := t.TempDir()
	acct, _ := nkeys.CreateAccount()
	aseed, _ := acct.Seed()
	good := filepath.Join(dir, "seal.xk")
	bad := filepath.Join(dir, "account.nk")
	os.WriteFile(good, append(curveSeed(t), '\n'), 0o600)
	os.WriteFile(bad, aseed, 0o600)
	if _, err := seal.Load(good); err != nil {
		t.Fatalf("load curve seed: %v", err)
	}
	_, err := seal.Load(bad)
	if err == nil || !strings.Contains(err.Error(), "curve seed") {
		t.Fatalf("load account seed: %v, want a refusal naming curve seeds", err)
	}
	if strings.Contains(err.Error(), string(aseed)) {
		t.Fatal("error holds the seed")
	}
}

// TestSameBytesAsNkeys: what Key seals, nkeys' xkeys open, and the other
// way round: the precomputed box is the same box.
func TestSameBytesAsNkeys(t *testing.T) {
	seed := curveSeed(t)
	k, err := seal.New(seed)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromCurveSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	secret := []byte("the identity seed of an account")
	sealed, err := k.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(sealed[strings.LastIndexByte(sealed, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := kp.Open(raw, pub); err != nil || string(got) != string(secret) {
		t.Fatalf("nkeys opens what Key sealed: %q, %v", got, err)
	}
	byNkeys, err := kp.Seal(secret, pub)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Open("xkv1:" + pub + ":" + base64.StdEncoding.EncodeToString(byNkeys))
	if err != nil || string(got) != string(secret) {
		t.Fatalf("Key opens what nkeys sealed: %q, %v", got, err)
	}
}

// BenchmarkSeal measures a seal and an open with the precomputed key next
// to their floor, nkeys' xkeys, which do a scalar multiplication each.
func BenchmarkSeal(b *testing.B) {
	seed := curveSeed(b)
	k, _ := seal.New(seed)
	kp, _ := nkeys.FromCurveSeed(seed)
	pub, _ := kp.PublicKey()
	secret := []byte("SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM")
	b.Run("floor-nkeys", func(b *testing.B) {
		for b.Loop() {
			box, _ := kp.Seal(secret, pub)
			if _, err := kp.Open(box, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("precomputed", func(b *testing.B) {
		for b.Loop() {
			s, _ := k.Seal(secret)
			if _, err := k.Open(s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

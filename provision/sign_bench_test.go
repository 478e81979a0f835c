package provision

import (
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// BenchmarkSignAccount measures signing an account JWT with its checks, next
// to the floor: the JWT library's Encode with a plain nkeys key pair.
func BenchmarkSignAccount(b *testing.B) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	op, err := LoadOperator(filepath.Join(res.Dir, bootstrap.OperatorJWTFile), filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	s := &Service{}
	s.maxJWT.Store(1 << 20)
	s.op.Store(op)
	acct, _ := nkeys.CreateAccount()
	pub, _ := acct.PublicKey()
	seed, _ := op.Signer.Seed()
	plain, _ := nkeys.FromSeed(seed)
	b.Run("floor-nkeys-encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := jwt.NewAccountClaims(pub).Encode(plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("service-sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.sign(jwt.NewAccountClaims(pub)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

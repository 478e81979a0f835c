package provision

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/keypair"
)

// Operator is the operator the service signs for: its identity, its system
// account, and the signing key the service uses. The identity key itself is
// never loaded.
type Operator struct {
	PublicKey     string
	SystemAccount string
	Claims        *jwt.OperatorClaims
	// Signer is the operator signing key; SignerKey is its public key.
	Signer    nkeys.KeyPair
	SignerKey string
}

// LoadOperator reads the operator JWT and the operator signing key seed and
// checks that they belong together: the seed must be an operator key listed
// among the JWT's signing keys, not the identity key.
func LoadOperator(jwtPath, seedPath string) (*Operator, error) {
	raw, err := os.ReadFile(jwtPath)
	if err != nil {
		return nil, fmt.Errorf("operator_jwt: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return nil, fmt.Errorf("operator_jwt %s: %w", jwtPath, err)
	}
	claims, err := jwt.DecodeOperatorClaims(token)
	if err != nil {
		return nil, fmt.Errorf("operator_jwt %s is not an operator JWT: %w", jwtPath, err)
	}
	if claims.SystemAccount == "" {
		return nil, fmt.Errorf("operator_jwt %s names no system account; set one with `nsc edit operator --system-account SYS`", jwtPath)
	}
	seedRaw, err := os.ReadFile(seedPath)
	if err != nil {
		return nil, fmt.Errorf("operator_signing_key: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(seedRaw)
	if err != nil {
		// The error of the parser never holds the seed; ours does not either.
		return nil, fmt.Errorf("operator_signing_key %s holds no nkey seed", seedPath)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("operator_signing_key %s: %w", seedPath, err)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("operator_signing_key %s holds public key %s, not a seed", seedPath, pub)
	}
	if !nkeys.IsValidPublicOperatorKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("operator_signing_key %s is %s key (%s); it must be an operator signing key (O...)", seedPath, article(keyKind(pub)), pub)
	}
	howTo := "create one with `nsc edit operator --sk generate` (or `provisioner init`), push the new operator JWT to every server, and point operator_signing_key at its seed"
	if pub == claims.Subject {
		kp.Wipe()
		return nil, fmt.Errorf("operator_signing_key %s is the operator's identity key %s; the service signs only with an operator signing key: %s", seedPath, pub, howTo)
	}
	if !slices.Contains(claims.SigningKeys, pub) {
		kp.Wipe()
		listed := "none"
		if len(claims.SigningKeys) > 0 {
			listed = strings.Join(claims.SigningKeys, ", ")
		}
		return nil, fmt.Errorf("operator_signing_key %s is %s, which is not a signing key of operator %s (listed: %s): %s", seedPath, pub, claims.Subject, listed, howTo)
	}
	seed, _ := kp.Seed()
	signer, err := keypair.FromSeed(seed)
	kp.Wipe()
	if err != nil {
		return nil, fmt.Errorf("operator_signing_key %s: %w", seedPath, err)
	}
	return &Operator{
		PublicKey:     claims.Subject,
		SystemAccount: claims.SystemAccount,
		Claims:        claims,
		Signer:        signer,
		SignerKey:     pub,
	}, nil
}

// keyKind names the kind of an nkey public key, for error messages.
func keyKind(pub string) string {
	switch {
	case nkeys.IsValidPublicOperatorKey(pub):
		return "operator"
	case nkeys.IsValidPublicAccountKey(pub):
		return "account"
	case nkeys.IsValidPublicUserKey(pub):
		return "user"
	case nkeys.IsValidPublicServerKey(pub):
		return "server"
	case nkeys.IsValidPublicClusterKey(pub):
		return "cluster"
	case nkeys.IsValidPublicCurveKey(pub):
		return "curve"
	}
	return "unknown"
}

// article puts "a" or "an" before a key kind.
func article(kind string) string {
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// LooksLikeSeed reports whether s holds something like an nkey seed
// anywhere (api.LooksLikeSeed).
func LooksLikeSeed(s string) bool { return api.LooksLikeSeed(s) }

func looksLikeSeed(s string) bool { return api.LooksLikeSeed(s) }

var errSeedGiven = errors.New("the value looks like an nkey seed; seeds are secrets: never send them, and replace this one")

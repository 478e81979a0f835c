package provision

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
)

// opWrite writes data to name in dir and returns the path.
func opWrite(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func opSeed(t *testing.T, kp nkeys.KeyPair) []byte {
	t.Helper()
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func opPub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func opKey(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestLoadOperatorFromInit(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	jwtPath := filepath.Join(res.Dir, bootstrap.OperatorJWTFile)

	t.Run("signing key loads", func(t *testing.T) {
		op, err := LoadOperator(jwtPath, filepath.Join(res.Dir, bootstrap.OperatorSigningKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if op.SignerKey != res.OperatorSigning {
			t.Errorf("SignerKey = %s, want %s", op.SignerKey, res.OperatorSigning)
		}
		if pub := opPub(t, op.Signer); pub != res.OperatorSigning {
			t.Errorf("Signer's public key = %s, want %s", pub, res.OperatorSigning)
		}
		if op.PublicKey != res.Operator {
			t.Errorf("PublicKey = %s, want %s", op.PublicKey, res.Operator)
		}
		if op.SystemAccount != res.SystemAccount || op.SystemAccount == "" {
			t.Errorf("SystemAccount = %q, want %s", op.SystemAccount, res.SystemAccount)
		}
		if op.Claims == nil || op.Claims.Subject != res.Operator || !op.Claims.StrictSigningKeyUsage {
			t.Errorf("Claims = %+v", op.Claims)
		}
		// The signer signs account JWTs the operator vouches for.
		ac := jwt.NewAccountClaims(opPub(t, opKey(t, nkeys.CreateAccount)))
		token, err := ac.Encode(op.Signer)
		if err != nil {
			t.Fatal(err)
		}
		back, err := jwt.DecodeAccountClaims(token)
		if err != nil {
			t.Fatal(err)
		}
		if back.Issuer != res.OperatorSigning || !op.Claims.DidSign(back) {
			t.Errorf("account JWT issued by %s is not signed by the operator", back.Issuer)
		}
	})

	t.Run("identity key refused", func(t *testing.T) {
		seedPath := filepath.Join(res.Dir, bootstrap.OperatorIdentityKeyFile)
		seed, err := os.ReadFile(seedPath)
		if err != nil {
			t.Fatal(err)
		}
		op, err := LoadOperator(jwtPath, seedPath)
		if err == nil {
			t.Fatalf("identity key accepted: %+v", op)
		}
		msg := err.Error()
		for _, want := range []string{"identity key", res.Operator, "signing key", seedPath} {
			if !strings.Contains(msg, want) {
				t.Errorf("error does not contain %q: %s", want, msg)
			}
		}
		if strings.Contains(msg, strings.TrimSpace(string(seed))) {
			t.Errorf("error contains the seed: %s", msg)
		}
	})
}

func TestLoadOperatorRefuses(t *testing.T) {
	dir := t.TempDir()
	identity := opKey(t, nkeys.CreateOperator)
	signing := opKey(t, nkeys.CreateOperator)
	system := opKey(t, nkeys.CreateAccount)

	claims := jwt.NewOperatorClaims(opPub(t, identity))
	claims.Name = "test"
	claims.SigningKeys.Add(opPub(t, signing))
	claims.SystemAccount = opPub(t, system)
	token, err := claims.Encode(identity)
	if err != nil {
		t.Fatal(err)
	}
	decorated, err := jwt.DecorateJWT(token)
	if err != nil {
		t.Fatal(err)
	}
	goodJWT := opWrite(t, dir, "operator.jwt", decorated)
	plainJWT := opWrite(t, dir, "plain.jwt", []byte(token+"\n"))
	signingSeed := opWrite(t, dir, "signing.nk", append(opSeed(t, signing), '\n'))

	noSys := jwt.NewOperatorClaims(opPub(t, identity))
	noSys.SigningKeys.Add(opPub(t, signing))
	noSysToken, err := noSys.Encode(identity)
	if err != nil {
		t.Fatal(err)
	}
	noSysJWT := opWrite(t, dir, "nosys.jwt", []byte(noSysToken))

	acctJWTClaims := jwt.NewAccountClaims(opPub(t, system))
	acctToken, err := acctJWTClaims.Encode(signing)
	if err != nil {
		t.Fatal(err)
	}
	acctJWT := opWrite(t, dir, "account.jwt", []byte(acctToken))

	unlisted := opKey(t, nkeys.CreateOperator)
	account := opKey(t, nkeys.CreateAccount)
	user := opKey(t, nkeys.CreateUser)
	userJWT, err := jwt.NewUserClaims(opPub(t, user)).Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, opSeed(t, user))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("plain and decorated JWT both load", func(t *testing.T) {
		for _, p := range []string{goodJWT, plainJWT} {
			op, err := LoadOperator(p, signingSeed)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(p), err)
			}
			if op.SignerKey != opPub(t, signing) || op.SystemAccount != opPub(t, system) {
				t.Errorf("%s: loaded %+v", filepath.Base(p), op)
			}
		}
	})

	tests := []struct {
		name     string
		jwtPath  string
		seed     []byte // written to a file; nil: seedPath is used as is
		seedPath string
		contains []string // the message is the contract: it names what is wrong
	}{
		{
			name: "identity seed", jwtPath: goodJWT, seed: opSeed(t, identity),
			contains: []string{"identity key", opPub(t, identity), "signing key"},
		},
		{
			name: "operator seed not listed", jwtPath: goodJWT, seed: opSeed(t, unlisted),
			contains: []string{opPub(t, unlisted), "not a signing key", opPub(t, identity), opPub(t, signing)},
		},
		{
			name: "account seed", jwtPath: goodJWT, seed: opSeed(t, account),
			contains: []string{"is an account key", opPub(t, account), "operator signing key"},
		},
		{
			name: "user creds file", jwtPath: goodJWT, seed: creds,
			contains: []string{"user", opPub(t, user)},
		},
		{
			name: "garbage", jwtPath: goodJWT, seed: []byte("this is not a seed\n"),
			contains: []string{"no nkey seed"},
		},
		{
			name: "damaged seed", jwtPath: goodJWT, seed: append([]byte("SO"), opSeed(t, signing)[2:20]...),
			contains: []string{"no nkey seed"},
		},
		{
			name: "empty seed file", jwtPath: goodJWT, seed: []byte{},
			contains: []string{"no nkey seed"},
		},
		{
			name: "missing seed file", jwtPath: goodJWT, seedPath: filepath.Join(dir, "absent.nk"),
			contains: []string{"operator_signing_key"},
		},
		{
			name: "no system account", jwtPath: noSysJWT, seedPath: signingSeed,
			contains: []string{"system account", noSysJWT},
		},
		{
			name: "account JWT as operator JWT", jwtPath: acctJWT, seedPath: signingSeed,
			contains: []string{"not an operator JWT"},
		},
		{
			name: "garbage JWT", jwtPath: opWrite(t, dir, "garbage.jwt", []byte("nope")), seedPath: signingSeed,
			contains: []string{"operator_jwt"},
		},
		{
			name: "missing JWT", jwtPath: filepath.Join(dir, "absent.jwt"), seedPath: signingSeed,
			contains: []string{"operator_jwt"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seedPath := tt.seedPath
			if tt.seed != nil {
				seedPath = opWrite(t, t.TempDir(), "key.nk", tt.seed)
			}
			op, err := LoadOperator(tt.jwtPath, seedPath)
			if err == nil {
				t.Fatalf("case %d accepted: %+v", i, op)
			}
			msg := err.Error()
			for _, want := range tt.contains {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not contain %q: %s", want, msg)
				}
			}
			// No seed of any key in play ever reaches the message.
			for _, kp := range []nkeys.KeyPair{identity, signing, system, unlisted, account, user} {
				if s := string(opSeed(t, kp)); strings.Contains(msg, s) || strings.Contains(msg, s[:20]) {
					t.Errorf("error contains a seed: %s", msg)
				}
			}
		})
	}
}

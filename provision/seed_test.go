package provision

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestLooksLikeSeed(t *testing.T) {
	t.Parallel()
	kp, _ := nkeys.CreateUser()
	b, _ := kp.Seed()
	seed := string(b)
	pub, _ := kp.PublicKey()
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	priv, _ := kp.PrivateKey()
	ckp, _ := nkeys.CreateCurveKeys()
	cpriv, _ := ckp.PrivateKey()
	tests := []struct {
		give string
		want bool
	}{
		{seed, true},
		{strings.ToLower(seed), true},
		{seed[:len(seed)-1], true},
		{seed[:39], true},
		{seed + ",", true},
		{"-----BEGIN USER NKEY SEED-----\n" + seed + "\n------END USER NKEY SEED------", true},
		{seed[:45] + "0" + seed[46:], true}, // a typo past the first 30 characters
		{seed[:10] + "0" + seed[11:], true}, // 0 for O early on
		{seed[:3] + "8" + seed[4:12] + "1" + seed[13:], true},
		// Lowered, a run stops at 0, 1, 8 and 9, which long lower-case
		// names hold: a seed both lowered and mistyped is not caught.
		{strings.ToLower(seed[:10] + "0" + seed[11:]), false},
		{"sandboxenvironment2024production", false},
		{"sourcecodeanalysis2019instance1", false},
		{pub, false},
		{"UDMXQLKA42KBHB67PPNVYSP43CULGWBE6AYN6KZFY7QH5WYA542HCXNB", false}, // holds "SP43..." inside
		{apub, false},
		{"acme", false},
		{"SalesDepartmentEuropeanRegionNorthernDivision", false},
		{"supercalifragilisticexpialidociousandmore", false},
		{"SUPPORT-TEAM-2024", false},
		// An encoded private key holds the seed's secret.
		{string(priv), true},
		{strings.ToLower(string(priv)), true},
		{string(cpriv), true},
		{"PLATFORMENGINEERINGOBSERVABILITYSERVICEACCOUNTS", false},
		// A JWT is skipped whole (base64 of keys holds seed-like runs);
		// what follows it is not.
		{`{"token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJTVUFBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWjIzNDU2NyJ9.sig","name":"` + seed + `"}`, true},
		{"eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.sig\n\n-----BEGIN USER NKEY SEED-----\n" + seed, true},
	}
	for range 2000 { // public keys are never taken for seeds
		u, _ := nkeys.CreateUser()
		p, _ := u.PublicKey()
		tests = append(tests, struct {
			give string
			want bool
		}{p, false})
	}
	for _, tt := range tests {
		if got := looksLikeSeed(tt.give); got != tt.want {
			t.Errorf("looksLikeSeed(%.30q...) = %v, want %v", tt.give, got, tt.want)
		}
	}
}

// seedLike is the definition looksLikeSeed implements in one pass, kept
// here as the test's oracle.
var seedLike = regexp.MustCompile(`(?:^|[^A-Z2-7])(S[OAUNCXP][A-Z0-9]{28,}|P[A-Z2-7]{55,})|(?:^|[^a-z2-7])(s[oauncxp][a-z2-7]{28,}|p[a-z2-7]{55,})`)

func regexpSeed(s string) bool {
	for _, sm := range seedLike.FindAllStringSubmatch(s, -1) {
		if sm[1] != "" || strings.ContainsAny(sm[2], "234567") {
			return true
		}
	}
	return false
}

// TestLooksLikeSeedMatchesDefinition compares the scanner with the regular
// expression on random text made of what seeds, keys and names hold. It
// makes 20,000 texts (a few seconds under the race detector, which the
// whole suite runs with); FuzzLooksLikeSeed searches further on demand:
// go test -fuzz FuzzLooksLikeSeed ./provision.
func TestLooksLikeSeedMatchesDefinition(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var b strings.Builder
		for n := r.IntN(12); n >= 0; n-- {
			p := seedParts[r.IntN(len(seedParts))]
			b.WriteString(strings.Repeat(p, 1+r.IntN(16)))
		}
		matchesDefinition(t, b.String())
	}
}

// FuzzLooksLikeSeed compares the scanner with the regular expression on
// what the fuzzer makes, starting from the pieces of seeds and keys.
func FuzzLooksLikeSeed(f *testing.F) {
	for _, p := range seedParts {
		f.Add(strings.Repeat(p, 30))
	}
	f.Add("SUAM" + strings.Repeat("A", 52))
	f.Add("x" + strings.Repeat("s", 2) + "ua" + strings.Repeat("a2", 30))
	f.Fuzz(matchesDefinition)
}

// seedParts are what the random texts are made of: the prefixes and
// alphabets of seeds, keys and names, and separators.
var seedParts = []string{"S", "s", "SU", "su", "SA", "so", "SB", "sx", "P", "p", "A", "a", "2", "7", "8", "0", "Z", "z", "-", " ", "\"", ":", "U", "ab", "AB"}

func matchesDefinition(t *testing.T, s string) {
	got, want := looksLikeSeed(s), regexpSeed(s)
	if got && !want {
		// The expression's matches do not overlap: a lower-case run
		// without a digit hides the boundary of a seed right after it.
		// The scanner looks at every start; the seed is in a suffix.
		for k := range len(s) {
			if want = regexpSeed(s[k:]); want {
				break
			}
		}
	}
	if got != want {
		t.Fatalf("looksLikeSeed(%q) = %v, the definition says %v", s, got, want)
	}
}

// BenchmarkLooksLikeSeed runs the check on a user.create body, as the
// responder does on every request; regexp is the expression it replaced.
func BenchmarkLooksLikeSeed(b *testing.B) {
	body := `{"account":"ADMXQLKA42KBHB67PPNVYSP43CULGWBE6AYN6KZFY7QH5WYA542HCXNB","name":"device-000123","role":"sensors","expires_in":"720h"}`
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if looksLikeSeed(body) {
				b.Fatal("a seed in a body without one")
			}
		}
	})
	b.Run("regexp", func(b *testing.B) {
		for b.Loop() {
			if regexpSeed(body) {
				b.Fatal("a seed in a body without one")
			}
		}
	})
}

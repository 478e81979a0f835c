package api_test

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
)

// TestPublicKeysPastedTogetherAreNoSeed: inside a run of capitals, a seed
// glued to what comes before it ("NKEY", "ID7") counts when it is whole.
// Counted by the run's length alone (longer than a public key), two public
// keys pasted together, which hold "S" and a key kind with 30 characters
// after it about one time in two, were refused as seeds.
func TestPublicKeysPastedTogetherAreNoSeed(t *testing.T) {
	refused := 0
	for range 200 {
		u, _ := nkeys.CreateUser()
		a, _ := nkeys.CreateAccount()
		up, _ := u.PublicKey()
		ap, _ := a.PublicKey()
		if api.LooksLikeSeed(up + ap) {
			refused++
		}
	}
	if refused > 0 {
		t.Fatalf("%d of 200 pairs of public keys pasted together taken for seeds", refused)
	}
	// A whole seed glued to capitals, digits or its own "S" still counts,
	// as does one after a lower-case word, and a private key so glued.
	kp, _ := nkeys.CreateAccount()
	seed, _ := kp.Seed()
	priv, _ := kp.PrivateKey()
	for _, s := range []string{"NKEY" + string(seed), "ID7" + string(seed), "S" + string(seed), "nkeys" + strings.ToLower(string(seed)), "KEY" + string(priv), "mykey" + strings.ToLower(string(priv))} {
		if !api.LooksLikeSeed(s) {
			t.Errorf("a glued seed or private key not taken for one: %.8s...", s)
		}
	}
}

// BenchmarkLooksLikeSeedShaped reads 64 KiB bodies shaped to pass the first
// checks at every other byte; "xy", the same length without such starts,
// is the floor. Looked for at every character of a run, a glued key made
// the "pa" body cost 37 ms, seven hundred times the floor; now about 1.4 ms.
func BenchmarkLooksLikeSeedShaped(b *testing.B) {
	for _, unit := range []string{"pa", "sa", "PA", "eyJ", "xy"} {
		body := strings.Repeat(unit, (64<<10)/len(unit))
		b.Run(unit, func(b *testing.B) {
			for b.Loop() {
				api.LooksLikeSeed(body)
			}
		})
	}
}

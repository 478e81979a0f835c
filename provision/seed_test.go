package provision

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestLooksLikeSeed(t *testing.T) {
	kp, _ := nkeys.CreateUser()
	b, _ := kp.Seed()
	seed := string(b)
	pub, _ := kp.PublicKey()
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
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
		{pub, false},
		{"UDMXQLKA42KBHB67PPNVYSP43CULGWBE6AYN6KZFY7QH5WYA542HCXNB", false}, // holds "SP43..." inside
		{apub, false},
		{"acme", false},
		{"SalesDepartmentEuropeanRegionNorthernDivision", false},
		{"supercalifragilisticexpialidociousandmore", false},
		{"SUPPORT-TEAM-2024", false},
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

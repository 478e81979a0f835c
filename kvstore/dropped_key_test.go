package kvstore

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/seal"
)

// TestSealKeyDroppedTooEarlyIsNamed: a seal_key rotation finished too
// early. This instance runs with the new key only, the old one dropped
// from seal_key_previous, while another, not restarted, still seals with
// the old one. Its ERROR said only "another instance runs with another
// seal_key ... give every instance the same seal_key and restart them",
// and its seal problem that the instances were given different seal_key
// files: an operator who had just rotated, every file alike, read of a
// mistake they had not made, and giving the same seal_key leaves the
// records the old key sealed unreadable. Both now name the other cause,
// and what to do for each: the key back in seal_key_previous, then
// store reseal.
func TestSealKeyDroppedTooEarlyIsNamed(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	ctx := bg(t)
	oldKey, oldSeed := newSealKey(t)
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	newSeed, _ := kp.Seed()
	current, err := seal.New(newSeed)
	if err != nil {
		t.Fatal(err)
	}
	late := openStore(t, d.connect(t, d.svcCreds), Options{Seal: oldKey, Instance: "late"})
	lb, logs := newLog(t)
	s := openStore(t, d.connect(t, d.svcCreds), Options{Seal: current, Instance: "rotated", Logger: lb})
	a := newAccount(t, "acme")
	if _, err := late.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	var p error
	eventually(t, 5*time.Second, "the rotated instance reports the old key", func() bool {
		p = s.SealProblem()
		return p != nil
	})
	var line string
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, "level=ERROR msg=\"kvstore: account records are sealed with a seal key this instance does not hold") {
			line = l
		}
	}
	for what, text := range map[string]string{"seal problem": p.Error(), "ERROR": line} {
		for _, want := range []string{oldKey.PublicKey(), "seal_key_previous", "store reseal", "not restarted", "dropped"} {
			if !strings.Contains(text, want) {
				t.Errorf("the %s %q does not say %q", what, text, want)
			}
		}
		for _, seed := range [][]byte{oldSeed, newSeed} {
			if strings.Contains(text, string(seed)) {
				t.Errorf("a seal seed in the %s", what)
			}
		}
	}
}

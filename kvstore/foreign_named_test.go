package kvstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
)

// TestRecordOfAnotherSealKeyShownByItsNameIsReported: an account record
// sealed with a key this instance lacks, whose name entry is missing when
// it opens (removed by hand), is kept hidden, and Open starts. The name
// entry written back afterwards (as Open's ERROR says to) showed the
// account: every read of it failed, a restart refused the bucket, yet the
// instance logged nothing more and its health said nothing: the record had
// been decoded before Open finished, when a foreign key is not reported,
// and its name entry's arrival was not looked at for it.
func TestRecordOfAnotherSealKeyShownByItsNameIsReported(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	ctx := bg(t)
	keyA, seedA := newSealKey(t)
	keyB, seedB := newSealKey(t)
	a := openStore(t, d.connect(t, d.svcCreds), Options{Seal: keyA, Instance: "a"})
	acct := newAccount(t, "acme")
	if _, err := a.CreateAccount(ctx, acct); err != nil {
		t.Fatal(err)
	}
	kv := a.kv
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Once a is closed: its watcher would write the name entry back.
	if err := kv.Delete(ctx, nameKey(acct.Name)); err != nil {
		t.Fatal(err)
	}

	lb, logB := newLog(t)
	b := openStore(t, d.connect(t, d.svcCreds), Options{Seal: keyB, Instance: "b", Logger: lb})
	if err := b.SealProblem(); err != nil {
		t.Fatalf("seal problem with the record hidden: %v", err)
	}
	rev, err := b.kv.Put(ctx, nameKey(acct.Name), []byte(acct.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AccountByName(ctx, acct.Name); !errors.Is(err, provision.ErrOtherSealKey) {
		t.Fatalf("b reads the account shown again: %v, want ErrOtherSealKey", err)
	}
	var p error
	eventually(t, 5*time.Second, "b reports the seal key of the account it shows", func() bool {
		p = b.SealProblem()
		return p != nil
	})
	if !strings.Contains(p.Error(), keyA.PublicKey()) {
		t.Errorf("b's seal problem: %v, want it to name %s", p, keyA.PublicKey())
	}
	logs := logB.String()
	var line string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "level=ERROR msg=\"kvstore: account records are sealed with a seal key this instance does not hold") {
			if line != "" {
				t.Errorf("the foreign key logged at ERROR twice")
			}
			line = l
		}
	}
	if !strings.Contains(line, acct.PublicKey) || !strings.Contains(line, keyA.PublicKey()) {
		t.Errorf("the ERROR for the foreign key, %q, does not name the account %s and the key %s", line, acct.PublicKey, keyA.PublicKey())
	}
	for _, seed := range [][]byte{seedA, seedB} {
		if strings.Contains(logs, string(seed)) || strings.Contains(p.Error(), string(seed)) {
			t.Errorf("a seal seed in b's log or problem")
		}
	}
}

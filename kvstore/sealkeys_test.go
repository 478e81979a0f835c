package kvstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

// TestOtherSealKeyIsReported: two instances on one new bucket, each given
// another seal_key (a mis-distributed seal.xk). Open refuses a wrong key
// only on a bucket that holds records, so both start, and each seals its
// accounts with a key the other cannot open. That showed only as a read
// failing (a 500) and at the next restart. The instance whose mirror gets
// such a record now logs the foreign key (its public part) at ERROR once,
// reports it as its seal problem, and reads of the account say why.
func TestOtherSealKeyIsReported(t *testing.T) {
	d := startDeployment(t, 1)
	ctx := bg(t)
	keyA, seedA := newSealKey(t)
	keyB, seedB := newSealKey(t)
	la, _ := newLog(t)
	lb, logB := newLog(t)
	a := openStore(t, d.connect(t, d.svcCreds), Options{Seal: keyA, Instance: "a", Logger: la})
	b := openStore(t, d.connect(t, d.svcCreds), Options{Seal: keyB, Instance: "b", Logger: lb})
	if err := b.SealProblem(); err != nil {
		t.Fatalf("seal problem before any foreign record: %v", err)
	}

	var pubs []string
	for _, name := range []string{"acme", "globex"} {
		acct := newAccount(t, name)
		if _, err := a.CreateAccount(ctx, acct); err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, acct.PublicKey)
	}
	eventually(t, 5*time.Second, "b's mirror holds both records", func() bool {
		return mirrorRevision(b, pubs[0]) > 0 && mirrorRevision(b, pubs[1]) > 0
	})
	_, err := b.Account(ctx, pubs[0])
	if !errors.Is(err, provision.ErrOtherSealKey) {
		t.Errorf("b reads a's account: %v, want ErrOtherSealKey", err)
	}
	p := b.SealProblem()
	if p == nil || !strings.Contains(p.Error(), keyA.PublicKey()) {
		t.Errorf("b's seal problem: %v, want it to name %s", p, keyA.PublicKey())
	}
	if err := a.SealProblem(); err != nil {
		t.Errorf("a's seal problem: %v, want none", err)
	}
	logs := logB.String()
	if n := strings.Count(logs, "level=ERROR"); n != 1 {
		t.Errorf("b logged %d lines at ERROR for two records sealed with one foreign key, want one", n)
	}
	if n := strings.Count(logs, "level=ERROR msg=\"kvstore: account records are sealed with a seal key this instance does not hold"); n != 1 {
		t.Errorf("b logged the foreign key %d times at ERROR, want once", n)
	}
	for _, seed := range [][]byte{seedA, seedB} {
		if strings.Contains(logs, string(seed)) || p != nil && strings.Contains(p.Error(), string(seed)) {
			t.Errorf("a seal seed in b's log or problem")
		}
	}
}

// TestSealKeyRotationInTwoSteps: README's rotation of seal_key. First every
// instance gets the new key as a previous key (and keeps sealing with the
// old); then, restarted one by one, with the new key as seal_key and the
// old as previous. An instance of the first step reads what one of the
// second seals, so none reports a seal problem at any point.
func TestSealKeyRotationInTwoSteps(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	ctx := bg(t)
	_, oldSeed := newSealKey(t)
	_, newSeed := newSealKey(t)
	firstStep, err := seal.New(oldSeed, newSeed)
	if err != nil {
		t.Fatal(err)
	}
	secondStep, err := seal.New(newSeed, oldSeed)
	if err != nil {
		t.Fatal(err)
	}
	a := openStore(t, d.connect(t, d.svcCreds), Options{Seal: firstStep, Instance: "a"})
	b := openStore(t, d.connect(t, d.svcCreds), Options{Seal: secondStep, Instance: "b"})
	fromA, fromB := newAccount(t, "from-a"), newAccount(t, "from-b")
	if _, err := a.CreateAccount(ctx, fromA); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateAccount(ctx, fromB); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "each mirror holds the other's record", func() bool {
		return mirrorRevision(a, fromB.PublicKey) > 0 && mirrorRevision(b, fromA.PublicKey) > 0
	})
	if _, err := a.Account(ctx, fromB.PublicKey); err != nil {
		t.Errorf("an instance of the first step reads an account sealed with the new key: %v", err)
	}
	if _, err := b.Account(ctx, fromA.PublicKey); err != nil {
		t.Errorf("an instance of the second step reads an account sealed with the old key: %v", err)
	}
	for _, s := range []*Store{a, b} {
		if err := s.SealProblem(); err != nil {
			t.Errorf("seal problem during a rotation in two steps: %v", err)
		}
	}
}

package kvstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
)

// TestSweepOfALostCreateWarnsOfItsSeeds: the record of a create that lost
// its name holds the account's seeds, which the sweep drops for good
// (history 1 keeps nothing of it). That was logged at INFO as any entry
// left by an unfinished change; an operator filtering at WARN never
// learned an account's keys were gone. It is a WARN naming the account.
func TestSweepOfALostCreateWarnsOfItsSeeds(t *testing.T) {
	d, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, _ := lostCreate(t, sa, sb, "left-behind")
	sc, lb := openLogged(t, d, sa)
	eventually(t, 5*time.Second, "the record is removed", func() bool {
		_, err := sc.kv.Get(ctx, accountKey(a.PublicKey))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	eventually(t, 5*time.Second, "the removal is logged", func() bool {
		return strings.Contains(lb.String(), accountKey(a.PublicKey))
	})
	for _, line := range strings.Split(lb.String(), "\n") {
		if strings.Contains(line, accountKey(a.PublicKey)) || strings.Contains(line, a.PublicKey) {
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "account="+a.PublicKey) {
				t.Errorf("the removal of a record that held seeds is logged as %q; want a WARN naming the account", line)
			}
		}
	}
}

// TestSweepVoidsALostCreateWhoseNameChangedHandsSince: a create that lost
// its name (its record written after the take-over's name entry, its
// fence never run) is voided by the next open's sweep, also when the name
// changed hands again before that open (its winner deleted, the name
// taken over by a third create): the name entry is then newer than the
// lost record, which a name entry rewritten by hand also makes, and the
// sweep kept the lost record, hidden, logging at each open that the name
// entry should be repaired with its key, which would have taken the name
// from the account that holds it. A name entry naming an account of that
// name is the name's holder's, whatever its revision.
func TestSweepVoidsALostCreateWhoseNameChangedHandsSince(t *testing.T) {
	d, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, b := lostCreate(t, sa, sb, "changed-hands")
	held, err := sb.Account(ctx, b.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.UpdateAccount(ctx, tombstone(t, b, provision.PhaseDeleted, time.Now().Unix()), held.Revision); err != nil {
		t.Fatal(err)
	}
	c := newAccount(t, "changed-hands")
	if _, err := sb.CreateAccount(ctx, c); err != nil {
		t.Fatalf("a create of the name its deleted holder left: %v", err)
	}
	sc, lb := openLogged(t, d, sa)
	eventually(t, 5*time.Second, "the lost create's record is removed", func() bool {
		_, err := sc.kv.Get(ctx, accountKey(a.PublicKey))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	if strings.Contains(lb.String(), "repair the name entry") {
		t.Errorf("the open asked for the name entry to be repaired:\n%s", lb.String())
	}
	if got, err := sc.AccountByName(ctx, c.Name); err != nil || got.PublicKey != c.PublicKey {
		t.Errorf("the name %q reads as %s (%v), want its holder %s", c.Name, got.PublicKey, err, c.PublicKey)
	}
}

// lostCreate makes, through sa, a create of name that loses the name to
// sb's create of it (b) between its claim and its record, and crashes
// before its fence: its record a is left behind, for the next open.
func lostCreate(t *testing.T, sa, sb *Store, name string) (a, b provision.Account) {
	t.Helper()
	a, b = newAccount(t, name), newAccount(t, name)
	takeOverAt(t, sa, sb, b, "create: name claimed", "create: record written")
	if _, err := sa.CreateAccount(bg(t), a); !errors.Is(err, errCrash) {
		t.Fatalf("a's create: %v, want the crash", err)
	}
	return a, b
}

// openLogged opens another store of d as sa's options do, logging into
// the returned buffer.
func openLogged(t *testing.T, d *deployment, sa *Store) (*Store, *logBuffer) {
	t.Helper()
	log, lb := newLog(t)
	opts := sa.opts
	opts.Logger = log
	return openStore(t, d.connect(t, d.svcCreds), opts), lb
}

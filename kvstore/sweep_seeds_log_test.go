package kvstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestSweepOfALostCreateWarnsOfItsSeeds: the record of a create that lost
// its name holds the account's seeds, which the sweep drops for good
// (history 1 keeps nothing of it). That was logged at INFO as any entry
// left by an unfinished change; an operator filtering at WARN never
// learned an account's keys were gone. It is a WARN naming the account.
func TestSweepOfALostCreateWarnsOfItsSeeds(t *testing.T) {
	d, sa, sb, _, _ := pair(t)
	ctx := bg(t)
	a, b := newAccount(t, "left-behind"), newAccount(t, "left-behind")
	takeOverAt(t, sa, sb, b, "create: name claimed", "create: record written")
	if _, err := sa.CreateAccount(ctx, a); !errors.Is(err, errCrash) {
		t.Fatalf("a's create: %v, want the crash", err)
	}
	log, lb := newLog(t)
	opts := sa.opts
	opts.Logger = log
	sc := openStore(t, d.connect(t, d.svcCreds), opts)
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

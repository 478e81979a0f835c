package kvstore

import (
	"strings"
	"testing"
	"time"
)

// TestOpenWithAnUnreadableLastEntry: an entry the store cannot read (here
// a user record that is not JSON) is skipped at Open, but it still counts
// as watched. Were it not counted, the watcher would sit behind the
// stream's last sequence with nothing to bring, and the watchdog would
// take it for stuck: a restart of the watcher and a read of the stream
// after every Open whose bucket ends with such an entry.
func TestOpenWithAnUnreadableLastEntry(t *testing.T) {
	t.Parallel()
	d := startDeployment(t, 1)
	nc := d.connect(t, d.svcCreds)
	k, _ := newSealKey(t)
	first := openStore(t, nc, Options{Seal: k})
	ctx := bg(t)
	u := newUser(t, "ANYACCOUNT", "broken")
	if _, err := first.kv.Put(ctx, userKey(u.PublicKey), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	log, lb := newLog(t)
	s := openStore(t, nc, Options{Seal: k, Logger: log})
	s.mu.RLock()
	watched := s.m.watched
	s.mu.RUnlock()
	info, err := s.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if watched != info.State.LastSeq {
		t.Errorf("after Open the watched revision is %d, the stream's last %d", watched, info.State.LastSeq)
	}
	time.Sleep(3*watchdogInterval + 500*time.Millisecond)
	if strings.Contains(lb.String(), "restarting it") {
		t.Errorf("the watchdog restarted an idle watcher:\n%s", lb.String())
	}
}

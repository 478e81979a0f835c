package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/events"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
)

// TestAuditCursorWhileLeaderlessIsNotRefused: an R3 audit stream without
// a leader (an election under way, its quorum away) has its stream info
// answered by any replica, with what that replica has applied, which may
// be behind the records a client already read from the leader. A cursor
// of such a record, past that replica's last sequence, was refused (400)
// as from a stream deleted and made again, telling the client to page
// again from 0: it read the whole audit twice, though the stream was never
// made again. It is said unavailable (503) instead, to be asked again.
func TestAuditCursorWhileLeaderlessIsNotRefused(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	// Five servers: with the stream's other two replicas away, the
	// cluster's meta group keeps its quorum (3 of 5), so that the
	// follower started again knows the stream, which has no leader.
	urls, confs, srvs := startClusterServers(t, 5)
	connect := func(url string, opts ...nats.Option) *nats.Conn {
		nc, err := nats.Connect(url, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	all := strings.Join(urls, ",")
	svc := connect(all, nats.ReconnectBufSize(-1))
	pub := events.New(connect(all), "prov", slog.New(slog.DiscardHandler))
	ctx := context.Background()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pub.WithAudit(c, svc, 3)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("WithAudit: %v", err)
		}
	}
	publishUsers(pub, 0, 3)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(connect(all))
	if err != nil {
		t.Fatal(err)
	}
	// A follower, caught up, is stopped: the records written next are
	// stored by the other two alone.
	follower := -1
	var peers []int // the stream's other replicas, the leader first
	for deadline := time.Now().Add(10 * time.Second); follower < 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the audit stream has no leader with two current replicas")
		}
		st, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			continue
		}
		ci := st.CachedInfo().Cluster
		if ci == nil || ci.Leader == "" {
			continue
		}
		peers = []int{index(ci.Leader)}
		for _, r := range ci.Replicas {
			if !r.Current || r.Offline {
				peers = nil
				break
			}
			peers = append(peers, index(r.Name))
		}
		if len(peers) == 3 {
			follower, peers = peers[2], peers[:2]
		}
	}
	srvs[follower].Stop()
	publishUsers(pub, 3, 6)
	if err := pub.Flush(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	pub.Close(time.Second)
	// Read until it answers: the stopped follower may have been the
	// JetStream meta leader, and a page's consumer waits for the next one
	// (CI timed out a page here once).
	var entries []api.AuditEntry
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		entries, _, _, err = mustAudit(t, svc).Page(c, "", 0, time.Time{}, 100)
		cancel()
		if err == nil && len(entries) == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("page of the 6 records: %d, %v", len(entries), err)
		}
	}
	cursor := entries[len(entries)-1].Seq
	// The other two go; the follower comes back alone, behind them, and
	// without a leader answers the stream's info itself.
	for _, i := range peers {
		srvs[i].Stop()
	}
	back, err := natsembed.Start(confs[follower], natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Stop)
	nc := connect(urls[follower])
	fjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	audit := mustAudit(t, nc)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := fjs.Stream(c, events.StreamName)
		cancel()
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("the follower never answered the stream's info alone: %v", err)
			}
			continue
		}
		info := st.CachedInfo()
		if info.State.LastSeq >= cursor {
			t.Fatalf("the follower stopped before records %d.. holds %d", cursor-2, info.State.LastSeq)
		}
		break
	}
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, _, _, err = audit.Page(c, "", cursor, time.Time{}, 10)
	if errors.Is(err, provision.ErrInvalid) {
		t.Fatalf("cursor %d, the last record read from the leader, refused while the stream has no leader: %v", cursor, err)
	}
	t.Logf("page after %d without a leader: %v", cursor, err)
}

// index is the index of server nN.
func index(name string) int {
	var i int
	fmt.Sscanf(name, "n%d", &i)
	return i - 1
}

func mustAudit(t *testing.T, nc *nats.Conn) *events.Audit {
	t.Helper()
	a, err := events.NewAudit(nc, "prov")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

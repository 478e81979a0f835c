package kvstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/testenv"
)

// opLog records the outcome of every write of the failover test.
type opLog struct {
	mu   sync.Mutex
	ops  []op
	kill time.Time
}

type op struct {
	kind  string
	start time.Time
	at    time.Time // when it returned
	err   error
}

func (l *opLog) add(kind string, start time.Time, err error) {
	l.mu.Lock()
	l.ops = append(l.ops, op{kind: kind, start: start, at: time.Now(), err: err})
	l.mu.Unlock()
}

// TestClusterFailover runs an R3 bucket on a three-server cluster, stops
// the stream leader while writes run, and checks that no acknowledged
// write is lost, that errors come only in the failover window, and that
// writes resume. The leader is an embedded server shut down cleanly (it
// hands its leaderships over), or a nats-server process killed with
// SIGKILL.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts three-server clusters")
	}
	for _, tt := range []struct {
		name  string
		start func(testing.TB, int) *deployment
	}{
		{"embedded shutdown", startDeployment},
		{"process kill -9", startProcesses},
	} {
		t.Run(tt.name, func(t *testing.T) { failover(t, tt.start(t, 3)) })
	}
}

func failover(t *testing.T, d *deployment) {
	key, _ := newSealKey(t)
	opts := Options{Seal: key, Instance: "writer", Timeout: 2 * time.Second, CloseTimeout: 30 * time.Second}
	s := openStore(t, d.connect(t, d.svcCreds), opts)
	if s.replicas != 3 {
		t.Fatalf("replicas %d in a cluster of three, want 3", s.replicas)
	}
	observer := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "observer"})
	ctx := bg(t)

	const updaters = 3
	accounts := make([]provision.Account, updaters)
	for i := range accounts {
		a := newAccount(t, fmt.Sprintf("acct-%d", i))
		rev, err := s.CreateAccount(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		a.Revision = rev
		accounts[i] = a
	}

	var (
		log     opLog
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		ackedMu sync.Mutex
		// The last acknowledged version of each account, and every user
		// whose add returned nil.
		ackedAcct  = map[string]provision.Account{}
		ackedUsers []provision.User
		seq        atomic.Int64
	)
	const opTimeout = 2 * time.Second
	opCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, opTimeout) }
	for i := range updaters {
		wg.Go(func() {
			a := accounts[i]
			for {
				select {
				case <-stop:
					return
				default:
				}
				next := a
				next.JWT = accountJWTAt(t, a.PublicKey, a.Name, 10_000+seq.Add(1))
				c, cancel := opCtx()
				start := time.Now()
				rev, err := s.UpdateAccount(c, next, a.Revision)
				cancel()
				log.add("update", start, err)
				switch {
				case err == nil:
					next.Revision = rev
					a = next
					ackedMu.Lock()
					ackedAcct[a.PublicKey] = a
					ackedMu.Unlock()
				case errors.Is(err, provision.ErrStale):
					// An earlier attempt whose answer was lost was stored:
					// read again.
					if cur, err := s.Account(ctx, a.PublicKey); err == nil {
						a = cur
					}
				default:
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	for _, durable := range []bool{true, true, false} {
		kind := map[bool]string{true: "add durable", false: "add async"}[durable]
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				u := newUser(t, accounts[n%updaters].PublicKey, kind)
				c, cancel := opCtx()
				start := time.Now()
				err := s.AddUser(c, u, durable)
				cancel()
				log.add(kind, start, err)
				if err == nil {
					ackedMu.Lock()
					ackedUsers = append(ackedUsers, u)
					ackedMu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond)
				}
				if !durable {
					// About a thousand a second: flat out, the asynchronous
					// writer would starve the others on two cores.
					time.Sleep(time.Millisecond)
				}
			}
		})
	}

	// Let the writes run, then shut the stream leader down.
	time.Sleep(1500 * time.Millisecond)
	stream, err := s.js.Stream(ctx, "KV_"+s.opts.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	log.mu.Lock()
	log.kill = time.Now()
	log.mu.Unlock()
	d.stop(t, leader)
	t.Logf("stopped the stream leader %s", leader)
	// When the stream has a new leader: the service cannot write before.
	// The election took 0-7 s in runs of this test alone, and longer
	// beside the other packages' tests, so the bound on errors counts
	// from it rather than from the kill.
	elected := make(chan time.Time, 1)
	go func() {
		for {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := stream.Info(c)
			cancel()
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader {
				elected <- time.Now()
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// Wait until every kind of write has succeeded for a second after its
	// last error, and the writes in flight at the kill have had their
	// timeout; at most 30s.
	deadline := time.Now().Add(30 * time.Second)
	for time.Since(log.kill) < opTimeout+time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	for {
		time.Sleep(200 * time.Millisecond)
		log.mu.Lock()
		resumed := map[string]bool{}
		lastErr := map[string]time.Time{}
		for _, o := range log.ops {
			if o.err != nil {
				lastErr[o.kind] = o.at
				resumed[o.kind] = false
			} else if o.at.After(log.kill) && o.at.Sub(lastErr[o.kind]) > time.Second {
				resumed[o.kind] = true
			}
		}
		log.mu.Unlock()
		all := len(resumed) == 3
		for _, r := range resumed {
			all = all && r
		}
		if all {
			break
		}
		if time.Now().After(deadline) {
			log.mu.Lock()
			last := map[string]string{}
			for _, o := range log.ops {
				if o.err != nil {
					last[o.kind] = o.err.Error()
				}
			}
			log.mu.Unlock()
			t.Fatalf("writes did not resume within 30s: %v; the last errors: %v", resumed, last)
		}
	}
	close(stop)
	wg.Wait()
	writesStopped := time.Now()
	// Close waits for the asynchronous adds: every one that returned nil
	// must be stored.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Report: rates before the kill; after it, the errors and the window
	// in which synchronous writes failed or hung: from the kill to the
	// first success of a write that started after the last error.
	log.mu.Lock()
	kill := log.kill
	begin := log.ops[0].start
	counts := map[string]int{}
	errs := map[string]int{}
	var lastErr time.Time
	var slowest time.Duration
	for _, o := range log.ops {
		if o.err == nil && o.at.Before(kill) {
			counts[o.kind]++
		}
		if o.at.After(kill) && o.kind != "add async" {
			slowest = max(slowest, o.at.Sub(o.start))
		}
		if o.err != nil {
			if o.at.Before(kill) {
				t.Errorf("%s failed before the leader was shut down: %v", o.kind, o.err)
			}
			if !errors.Is(o.err, provision.ErrUnavailable) && !errors.Is(o.err, provision.ErrStale) {
				t.Errorf("%s failed with %v, want ErrUnavailable (or ErrStale after a lost answer)", o.kind, o.err)
			}
			errs[o.kind]++
			lastErr = o.at
		}
	}
	// The longest time after the kill in which no synchronous write
	// succeeded.
	var stall time.Duration
	lastOK := kill
	for _, o := range log.ops {
		if o.kind != "add async" && o.err == nil && o.at.After(kill) {
			stall = max(stall, o.at.Sub(lastOK))
			lastOK = o.at
		}
	}
	log.mu.Unlock()
	span := kill.Sub(begin).Seconds()
	t.Logf("before the kill (%.1fs, all writers at once): %.0f updates/s, %.0f durable adds/s, %.0f async adds/s",
		span, float64(counts["update"])/span, float64(counts["add durable"])/span, float64(counts["add async"])/span)
	t.Logf("after the kill: errors %v, the last %v after it; slowest synchronous write %v; longest time without a successful synchronous write %v",
		errs, lastErr.Sub(kill).Round(time.Millisecond), slowest.Round(time.Millisecond), stall.Round(time.Millisecond))
	var back time.Time
	select {
	case back = <-elected:
	default:
		t.Fatal("the stream had no new leader when the writes resumed")
	}
	t.Logf("the stream had a new leader %v after the kill", back.Sub(kill).Round(time.Millisecond))
	if !lastErr.IsZero() && lastErr.Sub(back) > 10*time.Second {
		t.Errorf("errors went on %v after the stream had a new leader (%v after the kill)", lastErr.Sub(back), lastErr.Sub(kill))
		// Which writes failed late, and how: the cause is in them.
		log.mu.Lock()
		for _, o := range log.ops {
			if o.err != nil && o.at.After(back) {
				t.Logf("late error: %s started %v after the kill, took %v: %v", o.kind, o.start.Sub(kill).Round(time.Millisecond), o.at.Sub(o.start).Round(time.Millisecond), o.err)
			}
		}
		log.mu.Unlock()
	}

	// Every acknowledged write is in the bucket, as a store opened now on
	// the surviving servers reads it.
	check := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Instance: "check"})
	for pub, a := range ackedAcct {
		got, err := check.Account(ctx, pub)
		if err != nil {
			t.Fatal(err)
		}
		if got.Revision < a.Revision || got.Revision == a.Revision && got.JWT != a.JWT {
			t.Errorf("account %s: revision %d in the bucket, acknowledged %d", a.Name, got.Revision, a.Revision)
		}
	}
	for _, u := range ackedUsers {
		if got, err := check.User(ctx, u.PublicKey); err != nil || !got.Equal(u) {
			t.Errorf("acknowledged user %s (%s): %v", u.PublicKey, u.Name, err)
		}
	}
	t.Logf("checked %d accounts and %d acknowledged users", len(ackedAcct), len(ackedUsers))

	// The other instance's mirror caught up with the last writes: its
	// watcher survived the failover.
	for pub, a := range ackedAcct {
		eventually(t, 30*time.Second, "the observer's mirror catches up", func() bool { return mirrorRevision(observer, pub) >= a.Revision })
	}
	t.Logf("the observer's mirror held the last writes %v after they stopped", time.Since(writesStopped).Round(time.Millisecond))
	// And it still answers: a failover is no bucket put back to an earlier
	// state (during the election a follower that has not applied the last
	// entries answers the stream's info; its last sequence is not the
	// stream's), and a false alarm refuses everything until a restart.
	time.Sleep(3 * watchdogInterval)
	for pub := range ackedAcct {
		if _, err := observer.Account(ctx, pub); err != nil {
			t.Errorf("the observer after the failover: %v", err)
		}
		break
	}
}

// replicatedPair starts three nats-server processes with an R3 bucket and
// opens two stores, a and b, both on the stream leader's server, so that
// pausing the stream's followers (pause) stops replication, not the
// requests; resume lets them go on, and runs when the test ends too.
func replicatedPair(t *testing.T) (d *deployment, sa, sb *Store, pause, resume func()) {
	t.Helper()
	return replicatedPairOf(t, true, 20*time.Second)
}

// replicatedPairOf is replicatedPair, on a bucket made without atomic
// batches (by an earlier version) unless batches, with the stores' Timeout.
func replicatedPairOf(t *testing.T, batches bool, timeout time.Duration) (d *deployment, sa, sb *Store, pause, resume func()) {
	t.Helper()
	d = startProcesses(t, 3)
	key, _ := newSealKey(t)
	if !batches {
		js, err := jetstream.New(d.connect(t, d.svcCreds))
		if err != nil {
			t.Fatal(err)
		}
		old := (&Store{opts: Options{Bucket: "provisioner"}, subject: "$KV.provisioner."}).streamConfig(3)
		old.AllowAtomicPublish = false
		// A cluster just started may not know every peer yet (10005, "no
		// suitable peers for placement, peer offline"): Open asks again
		// for JetStreamWait, and so does this.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			_, err := js.CreateStream(context.Background(), old)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
		}
	}
	boot := openStore(t, d.connect(t, d.svcCreds), Options{Seal: key, Replicas: 3})
	info, err := boot.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var leaderURL string
	var followers []*node
	for _, nd := range d.nodes {
		if nd.name == info.Cluster.Leader {
			leaderURL = nd.url
		} else {
			followers = append(followers, nd)
		}
	}
	conn := func() *nats.Conn {
		nc, err := nats.Connect(leaderURL, nats.UserCredentials(d.svcCreds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	sa = openStore(t, conn(), Options{Seal: key, Timeout: timeout, Instance: "a"})
	sb = openStore(t, conn(), Options{Seal: key, Timeout: timeout, Instance: "b"})
	// Durable writes go through the batch loop only on a bucket that
	// allows atomic batches, and on their own only on one that does not:
	// the tests of either path must run on it.
	if sa.atomicBatches != batches {
		t.Fatalf("the store uses atomic batches: %v, on a bucket made for them: %v", sa.atomicBatches, batches)
	}
	var paused atomic.Bool
	pause = func() {
		// The followers of the stream leader as it is now: under load a
		// leader elected again since the start (one of the nodes then
		// followers) left a pause of those two with no effect on the
		// commit, and a write meant to hang was stored (CI).
		followers = followers[:0]
		deadline := time.Now().Add(10 * time.Second)
		for {
			info, err := boot.stream.Info(context.Background())
			if err == nil && info.Cluster.Leader != "" {
				for _, nd := range d.nodes {
					if nd.name != info.Cluster.Leader {
						followers = append(followers, nd)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no stream leader to pause the followers of: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, f := range followers {
			testenv.Pause(t, f.cmd.Process)
		}
		paused.Store(true)
	}
	resume = func() {
		if paused.CompareAndSwap(true, false) {
			for _, f := range followers {
				_ = f.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
	}
	t.Cleanup(resume)
	return d, sa, sb, pause, resume
}

// oneWins runs a's and b's creates of one name, b's half a second after
// a's, with the stream's followers paused until half a second after b's
// began, and checks that exactly one wins, the other with ErrConflict, and
// that every store, a new one too (after its sweep), shows the winner.
func oneWins(t *testing.T, d *deployment, sa, sb *Store, pauseAt func(), resume func(), name string) {
	t.Helper()
	ctx := context.Background()
	a, b := newAccount(t, name), newAccount(t, name)
	pauseAt()
	errA, errB := make(chan error, 1), make(chan error, 1)
	go func() { _, err := sa.CreateAccount(ctx, a); errA <- err }()
	time.Sleep(500 * time.Millisecond)
	go func() { _, err := sb.CreateAccount(ctx, b); errB <- err }()
	time.Sleep(500 * time.Millisecond)
	resume()
	ea, eb := <-errA, <-errB
	if (ea == nil) == (eb == nil) {
		t.Fatalf("a's create: %v; b's create: %v; want exactly one to win", ea, eb)
	}
	winner, lost := a, eb
	if ea != nil {
		winner, lost = b, ea
	}
	if !errors.Is(lost, provision.ErrConflict) {
		t.Errorf("the loser's create: %v, want ErrConflict", lost)
	}
	sc := openStore(t, d.connect(t, d.svcCreds), Options{Seal: sa.opts.Seal, Instance: "c"})
	for _, s := range []*Store{sa, sb, sc} {
		eventually(t, 5*time.Second, "the winner holds the name", func() bool {
			got, err := s.AccountByName(ctx, name)
			return err == nil && got.PublicKey == winner.PublicKey
		})
	}
}

// TestTakeOverDuringAReplicatedCreate: on an R3 bucket, a create's record
// write is still being replicated when another create of the name finds
// the claim without a record and voids the record's key. The stream
// refuses the void with 10164 (another write of the key under way), which
// says nothing of the key: the take-over waits for the answer instead of
// reading the key, finding it empty and taking the name (which let both
// creates win, and the first account be swept).
func TestTakeOverDuringAReplicatedCreate(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	d, sa, sb, pause, resume := replicatedPair(t)
	sa.fault = func(p string) error {
		if p == "create: name claimed" {
			pause()
		}
		return nil
	}
	oneWins(t, d, sa, sb, func() {}, resume, "contested")
}

// TestReusedNameDuringAReplicatedClaim: the name's entry is a delete
// marker (its account was removed), so kv.Create writes over the marker's
// revision, and passes that write's 10164 on unwrapped while another
// create's claim is replicated. It is asked again: the loser gets the
// conflict, not a 503.
func TestReusedNameDuringAReplicatedClaim(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	d, sa, sb, pause, resume := replicatedPair(t)
	ctx := context.Background()
	old := newAccount(t, "reused")
	rev, err := sa.CreateAccount(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.RemoveAccount(ctx, old.PublicKey, rev); err != nil {
		t.Fatal(err)
	}
	oneWins(t, d, sa, sb, pause, resume, "reused")
}

// TestDurableGivenUpInFlightIsNotKept: a durable add whose caller gave up
// while its write was in flight (the stream's followers paused, so no
// answer came) is answered ErrUnavailable; the write, stored once they
// are back, must not keep the key, or the caller's retry of it (a user
// JWT issued again, a second later) is refused as a conflict, and a
// self-service user counts with no creds handed out.
func TestDurableGivenUpInFlightIsNotKept(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPair(t)
	givenUpNotKept(t, sa, pause, resume)
}

// TestUnbatchedDurableGivenUpInFlightIsNotKept: on a bucket without atomic
// batches a durable add writes the record on its own, under its caller's
// context. A write in flight when that context ended was stored all the
// same after its caller was answered ErrUnavailable: the retry of the key
// got ErrConflict, and a user whose creds were never handed out was listed
// and counted toward a quota.
func TestUnbatchedDurableGivenUpInFlightIsNotKept(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, false, 20*time.Second)
	givenUpNotKept(t, sa, pause, resume)
}

// TestDurableTimedOutInALongOutageIsNotKept: a durable add whose write
// got no answer within the store's timeout (the stream's followers paused
// past it) is answered ErrUnavailable and withdrawn. The withdrawal read
// the key while they were still away, found no record (the stream leader
// answers from what it has committed) and took the write for not stored;
// committed once they were back, the record stood: the caller's retry of
// the key got ErrConflict, and a user whose creds were never handed out
// was listed and counted.
func TestDurableTimedOutInALongOutageIsNotKept(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, true, time.Second)
	timedOutNotKept(t, sa, pause, resume)
}

// TestUnbatchedDurableTimedOutInALongOutageIsNotKept is
// TestDurableTimedOutInALongOutageIsNotKept for a record written on its
// own (a bucket without atomic batches).
func TestUnbatchedDurableTimedOutInALongOutageIsNotKept(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, false, time.Second)
	timedOutNotKept(t, sa, pause, resume)
}

// timedOutNotKept adds a durable user record under the store's own
// timeout with the stream's followers paused past it and past the
// withdrawal's first attempt, and checks that the retry of the key, once
// they are back, is stored.
func timedOutNotKept(t *testing.T, sa *Store, pause, resume func()) {
	t.Helper()
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "caller-key")
	key := userKey(u.PublicKey)
	pause()
	err := sa.AddUser(ctx, u, true)
	if !errors.Is(err, provision.ErrUnavailable) {
		resume()
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	// Away a while longer: the write's own timeout ends and its
	// withdrawal starts, well within the 10 s after which the stream
	// leader, without a quorum, steps down (and stops answering reads).
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		sa.amu.Lock()
		settled := sa.pending[key] == nil
		sa.amu.Unlock()
		if settled {
			break
		}
	}
	resume()
	// The write in flight is committed (or dropped) once the followers
	// are back; its withdrawal ends after that.
	eventually(t, 15*time.Second, "the withdrawal settled", func() bool {
		sa.amu.Lock()
		defer sa.amu.Unlock()
		return sa.pending[key] == nil
	})
	again := u
	again.IssuedAt++
	if err := sa.AddUser(ctx, again, true); err != nil {
		if got, gerr := bucketUser(ctx, sa, u.PublicKey); gerr == nil && got.Equal(u) {
			t.Fatalf("retrying a durable add that was answered ErrUnavailable: %v; the bucket holds the first write's record, stored after its caller was told it is not", err)
		}
		t.Fatalf("retrying a durable add that was answered ErrUnavailable: %v", err)
	}
	if got, err := bucketUser(ctx, sa, u.PublicKey); err != nil || !got.Equal(again) {
		t.Fatalf("the bucket holds %+v, %v; want the retry's record", got, err)
	}
}

// TestFailedWithdrawIsTriedAgain: a durable add whose caller gave up
// while its write was in flight, stored all the same, is withdrawn; when
// the bucket is away for the whole of the withdrawal's timeout, the
// withdrawal gave up at once with a warning, and the record stayed for
// good (its account is live: no sweep takes it): the caller's retry of the
// key got ErrConflict, and a user whose creds were never handed out was
// listed and counted. It is tried again once the bucket is back.
func TestFailedWithdrawIsTriedAgain(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, false, 3*time.Second)
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "caller-key")
	// The bucket away through the withdrawal's attempts, as for its whole
	// timeout: the delete is not sent.
	var away, tried atomic.Bool
	away.Store(true)
	sa.fault = func(p string) error {
		if p == "withdraw: delete" && away.Load() {
			tried.Store(true)
			return fmt.Errorf("the bucket is away (test fault point): %w", nats.ErrNoResponders)
		}
		return nil
	}
	pause()
	short, cancel := context.WithTimeout(ctx, time.Second)
	err := sa.AddUser(short, u, true)
	cancel()
	resume()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	eventually(t, 10*time.Second, "the withdrawal tried", tried.Load)
	time.Sleep(2 * time.Second)
	away.Store(false)
	again := u
	again.IssuedAt++
	if err := sa.AddUser(ctx, again, true); err != nil {
		t.Fatalf("retrying a durable add that was answered ErrUnavailable, once the bucket is back: %v", err)
	}
	if got, err := bucketUser(ctx, sa, u.PublicKey); err != nil || !got.Equal(again) {
		t.Fatalf("the bucket holds %+v, %v; want the retry's record", got, err)
	}
}

// givenUpNotKept adds a durable user record with the stream's followers
// paused until the caller gives up, and checks that the retry of the key,
// once the write in flight reached the bucket, is stored.
func givenUpNotKept(t *testing.T, sa *Store, pause, resume func()) {
	t.Helper()
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "caller-key")
	pause()
	short, cancel := context.WithTimeout(ctx, time.Second)
	err := sa.AddUser(short, u, true)
	cancel()
	resume()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	// The write that was in flight reaches the bucket once the followers
	// are back.
	eventually(t, 10*time.Second, "the write in flight stored", func() bool {
		_, err := sa.stream.GetLastMsgForSubject(ctx, sa.subject+userKey(u.PublicKey))
		return err == nil
	})
	again := u
	again.IssuedAt++
	if err := sa.AddUser(ctx, again, true); err != nil {
		t.Fatalf("retrying a durable add that was answered ErrUnavailable: %v", err)
	}
	if got, err := bucketUser(ctx, sa, u.PublicKey); err != nil || !got.Equal(again) {
		t.Fatalf("the bucket holds %+v, %v; want the retry's record", got, err)
	}
}

// TestWithdrawalAfterCloseIsNotStarted: a durable add whose caller gave up
// while its write was in flight is withdrawn in the background, a
// goroutine Close waits for. Close's cleanup of the asynchronous publisher
// fails the write still in flight, and that failure started a withdrawal
// after Close's wait was over: a goroutine left running after Close (its
// WaitGroup Add meeting, or following, Close's Wait at a zero count).
func TestWithdrawalAfterCloseIsNotStarted(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, true, 5*time.Second)
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	log, lb := newLog(t)
	sa.log = log
	sa.opts.CloseTimeout = 200 * time.Millisecond
	u := newUser(t, a.PublicKey, "caller-key")
	pause()
	defer resume()
	short, cancel := context.WithTimeout(ctx, time.Second)
	err := sa.AddUser(short, u, true)
	cancel()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	if err := sa.Close(); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("Close with a write in flight: %v, want ErrUnconfirmed", err)
	}
	closed := len(lb.String())
	time.Sleep(time.Second)
	if after := lb.String()[closed:]; strings.Contains(after, "withdraw") {
		t.Fatalf("a withdrawal ran after Close returned:\n%s", after)
	}
}

// TestWithdrawOnClosedConnectionGivesUp: a withdrawal whose store's
// connection is closed for good (nats.go gave up on it: creds expired or
// revoked) cannot succeed on it. "connection closed" read as a passing
// failure, so the withdrawal tried again every second, a WARN each time,
// until Close, which waited its whole CloseTimeout for the write it kept
// pending. It gives up at once, saying what is left.
func TestWithdrawOnClosedConnectionGivesUp(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	_, sa, _, pause, resume := replicatedPairOf(t, false, 3*time.Second)
	ctx := bg(t)
	a := newAccount(t, "patient")
	if _, err := sa.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	log, lb := newLog(t)
	sa.log = log
	var tried atomic.Bool
	sa.fault = func(p string) error {
		if p == "withdraw: delete" && tried.CompareAndSwap(false, true) {
			sa.nc.Close() // closed for good, as nats.go does with refused creds
		}
		return nil
	}
	u := newUser(t, a.PublicKey, "caller-key")
	pause()
	short, cancel := context.WithTimeout(ctx, time.Second)
	err := sa.AddUser(short, u, true)
	cancel()
	resume()
	if !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	eventually(t, 10*time.Second, "the withdrawal tried", tried.Load)
	eventually(t, 5*time.Second, "the withdrawal settled", func() bool {
		sa.amu.Lock()
		defer sa.amu.Unlock()
		return sa.pending[userKey(u.PublicKey)] == nil
	})
	time.Sleep(1500 * time.Millisecond)
	if n := strings.Count(lb.String(), "trying again"); n > 0 {
		t.Fatalf("the withdrawal on a closed connection was tried again %d times:\n%s", n, lb.String())
	}
	if !strings.Contains(lb.String(), "revoke") {
		t.Fatalf("the withdrawal given up does not say what is left:\n%s", lb.String())
	}
}

// TestStopDuringAWithdrawalSaysToRevoke: a durable add answered
// ErrUnavailable (its write without an answer, the stream's followers
// away) is withdrawn in the background; a stop while they are still away
// gives the withdrawal up, and the write, committed once they are back,
// stands: a user listed and counted whose creds were never handed out.
// Close named its key as "may be missing from user.list", the opposite
// of what an operator has to do: it must say to revoke the user.
func TestStopDuringAWithdrawalSaysToRevoke(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a three-process cluster")
	}
	d, sa, _, pause, resume := replicatedPairOf(t, false, time.Second)
	ctx := bg(t)
	info, err := sa.stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var leaderURL string
	for _, nd := range d.nodes {
		if nd.name == info.Cluster.Leader {
			leaderURL = nd.url
		}
	}
	nc, err := nats.Connect(leaderURL, nats.UserCredentials(d.svcCreds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	lg, logs := newLog(t)
	sc := openStore(t, nc, Options{Seal: sa.opts.Seal, Timeout: time.Second, CloseTimeout: 2 * time.Second, Instance: "c", Logger: lg})
	a := newAccount(t, "stopped")
	if _, err := sc.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	u := newUser(t, a.PublicKey, "caller-key")
	pause()
	defer resume()
	if err := sc.AddUser(ctx, u, true); !errors.Is(err, provision.ErrUnavailable) {
		t.Fatalf("AddUser with the followers paused: %v, want ErrUnavailable", err)
	}
	if err := sc.Close(); !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("Close with the withdrawal not done: %v, want ErrUnconfirmed", err)
	}
	key := userKey(u.PublicKey)
	var said string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, key) {
			said = line
		}
	}
	if !strings.Contains(said, "revoke") || strings.Contains(said, "missing") {
		t.Fatalf("Close's ERROR for the key whose withdrawal it gave up: %q; want it to say to revoke the user, which may be stored", said)
	}
}

// Package events publishes the provisioner's change events: on
// <prefix>.events.<type> in the system account, where admins may subscribe,
// and, with the JetStream store, into a durable audit stream in the
// service's own account, which Audit pages through.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/jsbatch"
	"github.com/natsprov/provisioner/jsmake"
	"github.com/natsprov/provisioner/provision"
)

// StreamName is the audit stream in the service's own account.
const StreamName = api.AuditStream

// ErrReconnectBuffer: the audit stream's connection has a reconnect
// buffer (see WithAudit).
var ErrReconnectBuffer = errors.New("events: the audit stream's connection must have no reconnect buffer (nats.ReconnectBufSize(-1)): writes it kept while disconnected would be stored out of order")

// AuditMaxBytes bounds the audit stream: a quarter of the 4 GiB of disk
// `provisioner init` gives the service account in the tier of each replica
// count (about 2.7 million events).
const AuditMaxBytes = 1 << 30

// auditMaxBytes is the bound WithAudit gives the audit stream
// (AuditMaxBytes; tests lower it).
var auditMaxBytes int64 = AuditMaxBytes

// Publisher publishes events. It is safe for concurrent use.
type Publisher struct {
	nc     *nats.Conn
	prefix string
	js     jetstream.JetStream // nil: no audit stream
	svc    *nats.Conn          // the audit stream's connection
	log    *slog.Logger
	// streamCfg is the audit stream's config, to make it again when an
	// operator deleted it while the service runs.
	streamCfg jetstream.StreamConfig

	// The system-account events wait in sysQueue (at most auditMaxQueue)
	// for a sender goroutine (while sending), which publishes them in
	// order and stops once none wait.
	sysQueue []*nats.Msg
	sending  bool
	// sysDropped counts the events dropped since the queue was last
	// emptied: the first is logged at once, the count when it empties,
	// so that a long pause logs two lines, not one per event.
	sysDropped int
	// sysFailed counts the publishes that failed since the last one that
	// went out (the server away, the reconnect buffer full): the first is
	// logged with its error, the count when one goes out again, at Close,
	// and at most once a minute (sysFailLogged) while it lasts, so that an
	// outage logs a few lines, not one per event or per burst of them.
	sysFailed     int
	sysFailLogged time.Time

	// The audit writer: events wait in queue (at most auditMaxQueue) for
	// the writer goroutine, which sends them in atomic batches when the
	// stream allows them (allowAtomic) and enough wait, else one by one.
	// An event leaves the queue once stored or given up: the writer's
	// window is its head, and what failed there is written again before
	// anything after it.
	mu          sync.Mutex
	queue       []*nats.Msg
	writing     bool  // a writer goroutine runs
	lost        int64 // audit writes given up
	reported    int64 // lost, as Flush last reported it
	dropped     int64 // events dropped, the queue full, not yet logged
	closed      bool  // Close was called: the writer stops once the queue is empty
	idle        *sync.Cond
	signal      chan struct{}
	stop        chan struct{} // closed by Close
	ctx         context.Context
	cancel      context.CancelFunc // at Close's deadline: what is left is given up
	allowAtomic atomic.Bool
	// remakeFailing: the audit stream is gone and the last try to make
	// it again failed, so that it is logged at ERROR once, not at every
	// retry of the writer (a line every 2 s for as long as it lasts).
	// Only the writer goroutine, one at a time, uses it.
	remakeFailing bool
	// noBatchesUntil: the stream refused a batch as it allows none (an
	// operator set allow_atomic false while the service ran, as the start
	// puts it back on), so that no window of a batch's worth until then
	// costs a batch refused before its single writes. A stream made again
	// (recreate) allows them. Only the writer goroutine uses it.
	noBatchesUntil time.Time
	batchesOff     time.Duration // batchesOffFor when WithAudit ran
	// batches counts the atomic batches stored, for tests.
	batches atomic.Int64
	// overflowing: events were dropped since the writer last caught up
	// (the queue empty), so that the first drop is logged once for it,
	// not after every write round, which logged its count and set
	// dropped back to 0; droppedLogged is when a count was last logged.
	overflowing   bool
	droppedLogged time.Time
	// dupWindow is the audit stream's duplicate window, and startSeq its
	// last sequence when the writer started, in the stream made at
	// startOf (see storedAfter).
	dupWindow time.Duration
	startSeq  uint64
	startOf   time.Time
}

// auditTimeout bounds the wait for the answer to one audit write (a
// variable for tests). auditAttempts bounds the times the stream may
// refuse an event before it is logged as lost; a write that has no answer
// (the server is away, the stream has no leader) is tried again, with a
// back-off up to auditMaxBackoff, for as long as it takes: an outage
// loses nothing while at most auditMaxQueue events wait. Past that, each
// event dropped is counted and logged; at Close's deadline, each left.
var auditTimeout = 10 * time.Second

// auditDuplicates is the audit stream's duplicate window (a variable for
// tests): a write tried again within it after its answer was lost is
// stored once.
var auditDuplicates = 2 * time.Minute

const (
	auditAttempts   = 5
	auditMaxBackoff = 2 * time.Second
	// auditReconnectPoll is how often the writer looks whether its
	// connection is back.
	auditReconnectPoll = 100 * time.Millisecond
)

// Batching of audit writes. One write to the audit stream costs the
// servers about as much CPU as a whole user.create's floor (bench: the
// JetStream write floors, 140-180 µs of server CPU for a single
// acknowledged write, R1 with sync always or R3), and every change makes
// one. Audit writes are already off the request path, so on a replicated
// stream the writer waits auditLinger for more to gather and sends them
// as one atomic batch (R3: about 40 µs a write in batches of 32). Below
// auditMinBatch a batch costs more than single writes, so fewer go one by
// one, as on one replica (see WithAudit).
const (
	auditLinger   = 10 * time.Millisecond
	auditMinBatch = 16
	auditMaxBatch = 500
	// auditMaxQueue bounds the events waiting for the writer; an event
	// that finds it full is dropped, counted and logged (Publish does
	// not wait).
	auditMaxQueue = 4000
	// dropLogEvery: how often, at most, the count of audit events
	// dropped is logged while the queue stays full.
	dropLogEvery = 10 * time.Second
	// batchCommitTimeout bounds the wait for a batch's commit.
	batchCommitTimeout = 3 * time.Second
)

// batchesOffFor is how long the writer sends no batch after the audit
// stream refused one as it allows none (an operator set allow_atomic
// false; a variable for tests): then it tries one again, which a stream
// that allows them again stores.
var batchesOffFor = 5 * time.Minute

var _ provision.Events = (*Publisher)(nil)

// New returns a Publisher that publishes on nc, a system-account
// connection.
func New(nc *nats.Conn, prefix string, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{nc: nc, prefix: prefix, log: log}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// AuditSubject is the subject of an event in the audit stream:
// <prefix>.audit.<account>.<type>, so that an account's events are one
// subject filter.
func AuditSubject(prefix, account, typ string) string {
	return prefix + ".audit." + account + "." + typ
}

// WithAudit makes the publisher also store every event in the audit stream
// of the service's own account, creating the stream when it is missing.
//
// svc must have no reconnect buffer (nats.ReconnectBufSize(-1)), else
// WithAudit fails with ErrReconnectBuffer: nats.go keeps what is
// published while disconnected and sends it first on reconnect, so the
// writes of a window cut off mid-way would be stored before the writer's
// own retries of the events before them, out of order.
func (p *Publisher) WithAudit(ctx context.Context, svc *nats.Conn, replicas int) error {
	if svc.Opts.ReconnectBufSize >= 0 {
		return ErrReconnectBuffer
	}
	js, err := jetstream.New(svc,
		jetstream.WithPublishAsyncTimeout(auditTimeout),
	)
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	streamCfg := jetstream.StreamConfig{
		Name:        StreamName,
		Description: "Every change the provisioner made: who, what, when, the result. Never a seed.",
		Subjects:    []string{p.prefix + ".audit.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    max(1, replicas),
		MaxAge:      365 * 24 * time.Hour,
		// Bounded, so that it can never fill the service account's
		// storage, which the KV bucket shares: at the bound the oldest
		// events go, as with the age.
		MaxBytes: auditMaxBytes,
		Discard:  jetstream.DiscardOld,
		// An audit write tried again after its answer was lost is
		// stored once (each event has a message id).
		Duplicates: auditDuplicates,
		// Events that gather go in atomic batches (nats-server 2.12
		// and later; an older server ignores the field, and the writer
		// then sends them one by one).
		AllowAtomicPublish: true,
	}
	// A stream that exists keeps the room and the replicas an operator
	// gave it: put back to these bounds, a stream that discards its
	// oldest events dropped at once, and silently, every record past
	// them.
	if have, err := js.Stream(ctx, StreamName); err == nil {
		was := have.CachedInfo().Config
		streamCfg = keepRoom(was, have.CachedInfo().State.Bytes, streamCfg)
		if was.MaxBytes != streamCfg.MaxBytes || was.MaxAge != streamCfg.MaxAge || was.Replicas != streamCfg.Replicas {
			// An operator looking at the stream sees what the start
			// changed, and why.
			p.log.Warn("the audit stream's bounds were below the service's (or unbounded, which could fill the storage the KV bucket shares): changed at start; no record was dropped",
				"stream", StreamName, "max_bytes", was.MaxBytes, "now_max_bytes", streamCfg.MaxBytes,
				"max_age", was.MaxAge, "now_max_age", streamCfg.MaxAge, "replicas", was.Replicas, "now_replicas", streamCfg.Replicas)
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("events: audit stream %s: %w", StreamName, err)
	}
	// Deleted right before the start, the audit stream was maybe the
	// account's only stream on the server (a file store deployment): its
	// make may fail for a moment (jsmake), which failed the start.
	var stream jetstream.Stream
	err = jsmake.Retry(ctx, func() (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, streamCfg)
		return err
	})
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoLimits {
		// A create or update selects the tier from the account's limits
		// as they are now: they have none for the stream's replicas (an
		// R1 tier taken out, a kv_replicas of 5), which no
		// retry or restart adds. The server's words name no tier.
		return fmt.Errorf("events: audit stream %s: the account's JWT has JetStream limits per tier but none for R%d, the audit stream's %d replica(s); add it (`nsc edit account <service account> --js-tier %d --js-disk-storage 4G --js-mem-storage 256M`, then push it): %w", StreamName, streamCfg.Replicas, streamCfg.Replicas, streamCfg.Replicas, err)
	}
	if err != nil {
		return fmt.Errorf("events: audit stream %s: %w", StreamName, err)
	}
	p.js, p.svc, p.streamCfg = js, svc, streamCfg
	// On one replica the server stages a batch in a file store of its
	// own, which costs more than the syncs a batch saves (measured with
	// sync_interval always: 200-280 µs of server CPU per user.create with
	// single audit writes, 370 µs with batches of about 25). With
	// replicas it stages in memory: 380-420 µs against 490-520 µs.
	cfg := stream.CachedInfo().Config
	p.dupWindow, p.startSeq = cfg.Duplicates, stream.CachedInfo().State.LastSeq
	p.startOf = stream.CachedInfo().Created
	p.allowAtomic.Store(cfg.AllowAtomicPublish && cfg.Replicas > 1)
	p.batchesOff = batchesOffFor
	p.signal = make(chan struct{}, 1)
	p.stop = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.writing = true
	go p.writer(p.ctx)
	return nil
}

// keepRoom returns want with the larger bounds of have, the audit stream
// as it is, holding held bytes: its max bytes where they are more (an
// unbounded stream, an older version's or an operator's, is bounded, as
// it could fill the storage the bucket shares, but at no less than what it
// holds: bounded at want's, a stream that discards its oldest events
// dropped at once every record past it), its max age where it is longer (0: forever), and its replicas
// where it has more. It keeps an operator's republish and placement, the guards an operator gave it against
// deletes and purges of its records, the features it turned on that the
// server lets no update turn off (per-message TTLs, schedules), its
// persistence mode and its compression: the server refuses an update that
// takes a guard away ("can not cancel deny message deletes") or changes
// those, and WithAudit, writing its own config over them, failed at every
// start, so that the service never started.
func keepRoom(have jetstream.StreamConfig, held uint64, want jetstream.StreamConfig) jetstream.StreamConfig {
	want.DenyDelete = want.DenyDelete || have.DenyDelete
	want.DenyPurge = want.DenyPurge || have.DenyPurge
	want.AllowMsgTTL = want.AllowMsgTTL || have.AllowMsgTTL
	want.AllowMsgSchedules = want.AllowMsgSchedules || have.AllowMsgSchedules
	want.PersistMode = have.PersistMode
	want.Compression = have.Compression
	// What an operator added that changes nothing the writer relies on:
	// a republish that feeds a log collector, and where the stream is
	// placed. Written over, the collector got nothing more and the stream
	// moved, without a word.
	if want.RePublish == nil {
		want.RePublish = have.RePublish
	}
	if want.Placement == nil {
		want.Placement = have.Placement
	}
	if have.MaxBytes > want.MaxBytes {
		want.MaxBytes = have.MaxBytes
	} else if have.MaxBytes <= 0 && int64(held) > want.MaxBytes {
		want.MaxBytes = int64(held)
	}
	if have.MaxAge <= 0 || have.MaxAge > want.MaxAge {
		want.MaxAge = have.MaxAge
	}
	want.Replicas = max(want.Replicas, have.Replicas)
	return want
}

// Publish sends an event. It never fails the change it reports: a failed
// publish is logged.
func (p *Publisher) Publish(ctx context.Context, e api.Event) {
	data, err := json.Marshal(e)
	if err != nil {
		p.log.Error("could not encode an event", "type", e.Type, "error", err)
		return
	}
	p.publishSys(&nats.Msg{Subject: p.prefix + ".events." + e.Type, Data: data})
	if p.js == nil {
		return
	}
	// The change is made and its reply must not wait for the audit
	// stream, whose server may sync every write: the writer writes it,
	// in order, and again when that fails.
	m := nats.NewMsg(AuditSubject(p.prefix, e.Account, e.Type))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, nuid.Next())
	p.mu.Lock()
	// Publish never waits for the writer: it waited for room in the
	// queue, and with the stream away (a batch's commit takes up to
	// batchCommitTimeout to fail) a change's reply waited seconds, more
	// with every request queued behind it; one by one, each write past
	// the async publisher's pending bound waited 200ms. Every audit
	// write now goes through the writer, and an event that finds the
	// queue full is dropped, counted and logged (by the writer, with
	// the exact count).
	if len(p.queue) >= auditMaxQueue {
		p.lost++
		p.dropped++
		first := !p.overflowing
		p.overflowing = true
		p.mu.Unlock()
		if first {
			p.log.Error("the audit stream is too far behind: its queue is full and events are dropped until it catches up", "queue", auditMaxQueue)
		}
		return
	}
	p.queue = append(p.queue, m)
	// After Close, a writer is started again for what comes later, and
	// stops once it is written, or auditTimeout later.
	var restart context.Context
	if p.closed && !p.writing {
		p.writing = true
		p.ctx, p.cancel = context.WithTimeout(context.Background(), auditTimeout)
		restart = p.ctx
	}
	p.mu.Unlock()
	if restart != nil {
		go p.writer(restart)
		return
	}
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// publishSys queues a system-account event for the sender, which it
// starts when none runs. Publish published it itself, and with the
// server paused (its sockets full) nats.go wrote to the socket inside
// the publish, under the connection's lock, for up to its flusher
// timeout (a minute): Publish, and every Publish behind it, waited that
// long. An event that finds the queue full is dropped and logged.
func (p *Publisher) publishSys(m *nats.Msg) {
	p.mu.Lock()
	if len(p.sysQueue) >= auditMaxQueue {
		p.sysDropped++
		first := p.sysDropped == 1
		p.mu.Unlock()
		if first {
			p.log.Warn("could not publish an event: too many wait; dropping events until they are sent", "subject", m.Subject, "queue", auditMaxQueue)
		}
		return
	}
	p.sysQueue = append(p.sysQueue, m)
	start := !p.sending
	p.sending = true
	p.mu.Unlock()
	if start {
		go p.sendSys()
	}
}

// sendSys publishes the queued system-account events in order, one at a
// time from the head of the queue (so that Close can tell, at its
// deadline, which were not sent), and returns once none wait.
func (p *Publisher) sendSys() {
	for {
		p.mu.Lock()
		if len(p.sysQueue) == 0 {
			p.sysQueue = nil
			p.sending = false
			dropped := p.sysDropped
			p.sysDropped = 0
			p.idle.Broadcast()
			p.mu.Unlock()
			if dropped > 0 {
				p.log.Warn("system-account events dropped while too many waited", "dropped", dropped)
			}
			return
		}
		m := p.sysQueue[0]
		p.sysQueue[0] = nil
		p.sysQueue = p.sysQueue[1:]
		p.mu.Unlock()
		p.noteSys(m.Subject, p.nc.PublishMsg(m))
	}
}

// noteSys notes how a system-account publish went (sysFailed): with the
// server away and the connection's reconnect buffer full, every event
// logged a line of its own.
func (p *Publisher) noteSys(subject string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil && p.sysFailed > 0:
		p.log.Info("system-account events are published again", "failed_meanwhile", p.sysFailed)
		p.sysFailed = 0
	case err == nil:
	case p.sysFailed == 0:
		p.sysFailed = 1
		p.sysFailLogged = time.Now()
		p.log.Warn("could not publish an event; those that follow and fail too are counted, and the count logged once one goes out again", "subject", subject, "error", err)
	default:
		p.sysFailed++
		if time.Since(p.sysFailLogged) >= time.Minute {
			p.sysFailLogged = time.Now()
			p.log.Warn("could not publish system-account events", "failed", p.sysFailed, "error", err)
		}
	}
}

// closeSys waits, until deadline, for the system-account events queued to
// be handed to the connection (which its owner drains after Close). What
// still waits then is given up, logged and returned as an error: Close
// returned with them queued, and the stop that follows closed the
// connection and exited before the sender got to them, so they were
// neither published nor logged.
func (p *Publisher) closeSys(deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	sent := p.wait(ctx, func() bool { return !p.sending })
	p.mu.Lock()
	if p.sysFailed > 1 {
		p.log.Warn("could not publish system-account events", "failed", p.sysFailed)
	}
	p.sysFailed = 0
	p.mu.Unlock()
	if sent {
		return nil
	}
	// The events dropped earlier, the queue full, are logged by the
	// sender once the queue empties: it is stuck in a publish, and the
	// stop that follows exits before it gets there, so they are counted
	// here.
	p.mu.Lock()
	n, dropped := len(p.sysQueue), p.sysDropped
	p.sysQueue, p.sysDropped = nil, 0
	p.mu.Unlock()
	if n == 0 && dropped == 0 {
		return nil
	}
	p.log.Error("events not published when the publisher closed", "lost", n, "dropped_before", dropped)
	return fmt.Errorf("events: %d events not published within the close's time, and %d dropped before while too many waited", n, dropped)
}

// writer writes the queued audit events, in order, until Close: after a
// signal it waits auditLinger for more (unless a batch's worth waits
// already), then writes what waits. A write that fails is tried again,
// with a back-off, before any event after it: the events of the window
// that were not stored wait at the head of the queue (so an account's
// events are stored in the order they were published; they were written
// again each in a goroutine of its own, after a sleep, while the later
// ones went on, and came out of order after an outage). An event the
// stream refused auditAttempts times is given up; one without an answer
// is not (see auditTimeout). When ctx ends (Close's deadline), what is
// left is given up.
func (p *Publisher) writer(ctx context.Context) {
	failures := 0    // failed writes in a row, for the back-off
	refusals := 0    // times the stream refused the event at the head of the queue
	unconfirmed := 0 // events at the head written without an answer: they may be stored
	// since is when the first of the writes that may be stored without
	// an answer was sent (zero: none), and lastSeq the stream sequence of
	// the last write answered, before which none of them is: a write
	// tried again once the stream's duplicate window has passed since
	// its first copy is not recognised by its message id and is stored
	// again, so that the writer first looks for them (storedAfter).
	// lastOf is when the stream lastSeq counts in was made: one deleted
	// and made again (by an operator, this writer or another instance)
	// counts from 1 again, and looked at from the old lastSeq, it held
	// none of the writes it stored, which were stored again.
	var since time.Time
	lastSeq, lastOf := p.startSeq, p.startOf
	maybe := 0 // events at the head of the queue sent since without an answer
	// lookFailed: the look for them failed since it last succeeded
	// (logged once: retried silently, the writer held every audit write
	// and an operator saw why only once events were dropped).
	lookFailed := false
	again := writeUntilNew // how a window is written after a failure
	batchFails := 0        // batches that failed since one was stored
	for {
		p.mu.Lock()
		n, closed := len(p.queue), p.closed
		if ctx.Err() != nil || (n == 0 && closed) {
			// It stops under the lock that Publish takes to queue an
			// event, which starts another writer once it has.
			p.queue = nil
			p.lost += int64(n)
			p.writing = false
			p.idle.Broadcast()
			p.mu.Unlock()
			if n > 0 {
				p.log.Error("audit events not stored when the publisher closed", "lost", n,
					"written_unanswered", min(n, unconfirmed)) // these may be stored after all
			}
			p.logDropped(true)
			return
		}
		p.mu.Unlock()
		stop := p.stop
		if closed {
			stop = nil // closed: it wakes no more
		}
		if n == 0 {
			select {
			case <-p.signal:
			case <-stop:
			}
			continue
		}
		if p.batching() && n < auditMinBatch && failures == 0 && !closed {
			select {
			case <-time.After(auditLinger):
			case <-stop:
			}
		}
		p.mu.Lock()
		window := slices.Clone(p.queue[:min(len(p.queue), auditMaxBatch)])
		p.mu.Unlock()
		if p.svc.IsClosed() {
			// Nothing will be written on this connection again.
			p.giveUp(len(window), "the audit stream's connection is closed", nats.ErrConnectionClosed)
			continue
		}
		if !p.svc.IsConnected() {
			// Nothing is written while the connection is away: nats.go
			// would keep the write for the reconnect, and a write that
			// had no answer in time was given up as lost (after 4
			// attempts of auditTimeout and 2s of back-off, 42s), though
			// its copies were stored on reconnect.
			select {
			case <-time.After(auditReconnectPoll):
			case <-ctx.Done():
			}
			continue
		}
		// Writes without an answer for a quarter less than the duplicate
		// window (their retries are answered, or given up, within
		// auditTimeout): the ones the stream holds leave the queue before
		// the others are written again. Only after a failure: the normal
		// path costs nothing more.
		if !since.IsZero() && p.dupWindow > 0 && time.Since(since) >= p.dupWindow-p.dupWindow/4 {
			checked := time.Now()
			held, made, err := p.storedAfter(ctx, lastSeq, lastOf, window)
			if err != nil {
				if !lookFailed {
					lookFailed = true
					p.log.Warn("audit writes held: could not look in the audit stream for writes whose answers were lost past its duplicate window (written again unseen, they could be stored twice); trying again", "stream", StreamName, "waiting", n, "error", err)
				}
				failures++
				select {
				case <-time.After(min(time.Duration(failures)*200*time.Millisecond, auditMaxBackoff)):
				case <-ctx.Done():
				}
				continue
			}
			if lookFailed {
				lookFailed = false
				p.log.Info("audit writes resumed: the audit stream answered the look for writes whose answers were lost", "stream", StreamName)
			}
			// What is not held now was not stored: a copy written from
			// here is the first the window counts from.
			since = checked
			if !made.Equal(lastOf) {
				// Another stream than lastSeq's: its answers count
				// from its start.
				lastSeq, lastOf = 0, made
			}
			if len(held) > 0 {
				p.mu.Lock()
				p.queue = slices.DeleteFunc(p.queue, func(m *nats.Msg) bool { return held[m.Header.Get(jetstream.MsgIDHeader)] })
				p.idle.Broadcast()
				p.mu.Unlock()
				unconfirmed = max(0, unconfirmed-len(held))
				maybe = max(0, maybe-len(held))
				continue
			}
		}
		// After a failure, one by one (again): a batch that was stored
		// after all would be refused whole for its message ids, where
		// single writes of the same events are stored once each.
		mode := writeFirst
		if failures > 0 {
			mode = again
		}
		batch := p.batched(window, mode)
		sentAt := time.Now()
		stored, sent, seq, err := p.write(ctx, window, mode)
		if batch && err == nil {
			batchFails = 0
		} else if batch {
			batchFails++
		}
		if batch && batchesDisabled(err) {
			if p.noBatchesUntil.IsZero() {
				p.log.Info("the audit stream allows no atomic batches (allow_atomic is off): events are written one at a time, which costs the servers more; a batch is tried again now and then",
					"stream", StreamName, "retry_in", p.batchesOff)
			}
			p.noBatchesUntil = time.Now().Add(p.batchesOff)
		} else if batch && err == nil {
			p.noBatchesUntil = time.Time{}
		}
		p.mu.Lock()
		p.queue = slices.Delete(p.queue, 0, stored)
		p.idle.Broadcast()
		p.mu.Unlock()
		if seq > 0 {
			lastSeq = seq
		}
		if maybe = max(maybe-stored, sent-stored); maybe == 0 {
			since = time.Time{} // nothing sent is left unanswered
		} else if since.IsZero() {
			since = sentAt
		}
		if stored > 0 {
			failures, refusals, unconfirmed = 0, 0, 0
			p.logDropped(false)
		}
		if stored == len(window) || (stored > 0 && err == nil) {
			// All written, or the writes one by one after a failure
			// stopped where a batch may go again.
			continue
		}
		failures++
		// A batch the stream refused for one of its events is written
		// again one by one to its end, so that the events before that
		// one are stored and it is refused on its own, and so are the
		// windows while batches fail again and again (a stream whose
		// ingest queue overflows drops a message of each, or one that
		// allows none): written until the first is stored, only one
		// event went between two failed batches. After any other
		// failure, one by one only until the stream is seen to store.
		again = writeUntilNew
		if (refused(err) && !batchCut(err)) || batchFails > 1 {
			again = writeEach
		}
		if refused(err) {
			if refusals++; refusals == auditAttempts {
				p.giveUp(1, "the audit stream refused an event", err)
				failures, refusals, unconfirmed = 0, 0, max(0, unconfirmed-1)
				maybe = max(0, maybe-1)
				continue
			}
		} else {
			unconfirmed = max(unconfirmed, sent-stored)
			if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
				p.recreate(ctx)
			}
		}
		select {
		case <-time.After(min(time.Duration(failures)*200*time.Millisecond, auditMaxBackoff)):
		case <-ctx.Done():
		}
	}
}

// recreate makes the audit stream again when it is gone (an operator
// deleted it while the service runs): every write to it is answered "no
// responders", as while a stream has no leader, and was tried forever,
// the queue filling and every event after it dropped. A stream that
// exists (without a leader, say) is left as it is.
func (p *Publisher) recreate(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if _, err := p.js.Stream(ctx, StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		return
	}
	// The audit stream was maybe the account's only stream on the
	// server: a make right after its delete may fail for a moment (jsmake).
	err := jsmake.Retry(ctx, func() error {
		_, err := p.js.CreateStream(ctx, p.streamCfg)
		return err
	})
	if err != nil {
		if !p.remakeFailing {
			p.log.Error("the audit stream is gone and could not be made again; the writer keeps trying, and logs again once it is made", "stream", StreamName, "error", err)
		} else {
			p.log.Debug("the audit stream is gone and could not be made again", "stream", StreamName, "error", err)
		}
		p.remakeFailing = true
		return
	}
	p.remakeFailing = false
	p.noBatchesUntil = time.Time{}
	p.log.Warn("the audit stream was gone (deleted while the service ran): made again", "stream", StreamName)
}

// errCodeDuplicateInProcess is nats-server's JSStreamDuplicateMessageConflict.
const errCodeDuplicateInProcess = 10158

// noRoomCodes are JetStream's answers to a write that finds no room: the
// account's storage limit reached (10002, a 400), or the servers out of
// storage (10023, 10047), as the store reads them (kvstore's full).
var noRoomCodes = []jetstream.ErrorCode{10002, 10023, 10047}

// errCodeNoLimits is JetStream's answer to a write to a stream whose tier
// the account's limits no longer have (10120, "no JetStream default or
// applicable tiered limit present"): they changed between flat and tiered
// while the stream existed, and the server refuses every write to it
// until it is restarted.
const errCodeNoLimits = 10120

// refused tells whether a write failed for what it is (the stream
// answered with an error other than unavailable or overloaded, or nats.go
// would not send it), where another attempt may only fail the same way;
// the other failures are the stream's or the connection's, and pass.
func refused(err error) bool {
	var api *jetstream.APIError
	if errors.As(err, &api) {
		// 429: the stream's ingest queue was full and it dropped the
		// write, or too many atomic batches were open: it says nothing of
		// the event, and counted as a refusal it gave up events that
		// another attempt stored.
		// 409 "duplicate message id is in process" (10158, R3): an
		// earlier attempt of this very event is still being stored; the
		// next attempt finds it stored, or stores it.
		// No room (the service account's storage, which the bucket
		// shares, is full) says nothing of the event either: an operator
		// makes room, as for the store's user records, which are not
		// given up on. The account's limit comes as a 400, and counted
		// as a refusal it gave up, within two seconds, the events of the
		// changes made as the bucket filled. No limit for the stream's
		// tier says nothing of the event either: a restart of the
		// servers mends it, and the store keeps its user records for it.
		return api.Code < 500 && api.Code != 429 && api.ErrorCode != errCodeDuplicateInProcess &&
			api.ErrorCode != errCodeNoLimits && !slices.Contains(noRoomCodes, api.ErrorCode)
	}
	for _, transient := range []error{
		context.DeadlineExceeded, context.Canceled, nats.ErrTimeout,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrNoStreamResponse, nats.ErrNoResponders,
		nats.ErrDisconnected, nats.ErrReconnectBufExceeded, nats.ErrConnectionClosed,
	} {
		if errors.Is(err, transient) {
			return false
		}
	}
	return err != nil
}

// giveUp gives up the first n events of the queue, counted and logged.
func (p *Publisher) giveUp(n int, why string, err error) {
	p.mu.Lock()
	subject := p.queue[0].Subject
	p.queue = slices.Delete(p.queue, 0, n)
	p.lost += int64(n)
	p.idle.Broadcast()
	p.mu.Unlock()
	p.log.Error("could not store events in the audit stream: "+why, "lost", n, "first_subject", subject, "error", err)
}

// writeMode is how write writes a window.
type writeMode int

const (
	// writeFirst: in one atomic batch where the stream allows them and
	// enough wait, else one by one.
	writeFirst writeMode = iota
	// writeUntilNew, after a write without an answer or cut by a leader
	// change: one by one, and on a replicated stream only until one is
	// stored that the stream did not hold before, so that a batch may
	// go again.
	writeUntilNew
	// writeEach, after the stream refused a batch for one of its events:
	// one by one to the window's end or the first that is not stored.
	writeEach
)

// batchCut tells whether err is a batch's refusal that says nothing of
// its events: a leader change cut it ("atomic publish batch is
// incomplete"), or some of them were stored already (a batch stored
// after all whose commit's answer was lost: "atomic publish batch
// contains duplicate message id").
func batchCut(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == errCodeBatchIncomplete || api.ErrorCode == errCodeBatchDuplicate)
}

// nats-server's JSAtomicPublishIncompleteBatchErr and
// JSAtomicPublishContainsDuplicateMessageErr.
const (
	errCodeBatchIncomplete = 10176
	errCodeBatchDuplicate  = 10201
)

// errCodeBatchesDisabled is nats-server's JSAtomicPublishDisabledErr.
const errCodeBatchesDisabled = 10174

// write writes a window of audit events, in one atomic batch or one by
// one, and returns how many of its first events were stored, how many
// were written, the stream sequence of the last of the first stored (0:
// none), and the error of the first that was not stored (nil when
// writeUntilNew stopped by choice).
//
// On a replicated stream no write is sent while the one before it has no
// answer (a batch is one write): of writes sent together, those that
// reached a leader stepping down were lost while those after them
// reached the new leader and were stored, and the lost ones, written
// again, were stored after them, out of order. On one replica, where
// no leader changes, the single writes go together.
func (p *Publisher) write(ctx context.Context, window []*nats.Msg, mode writeMode) (stored, sent int, seq uint64, err error) {
	if p.batched(window, mode) {
		seq, err := p.writeBatch(ctx, window)
		if err != nil {
			return 0, len(window), 0, err
		}
		return len(window), len(window), seq, nil
	}
	if p.allowAtomic.Load() {
		return p.writeInTurn(ctx, window, mode == writeUntilNew)
	}
	var sendErr error
	futures := make([]jetstream.PubAckFuture, 0, len(window))
	for _, m := range window {
		// No retry within the jetstream package (on no responders): it
		// would write this event again on a timer of its own, after the
		// events behind it.
		f, err := p.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	// Each answer comes, or fails, within auditTimeout; an event after one
	// that failed may have been stored, and is written again (its message
	// id makes it count once).
	stored = -1
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if stored < 0 {
				seq = ack.Sequence
			}
		case e := <-f.Err():
			if stored < 0 {
				stored, err = i, e
			}
		case <-ctx.Done():
			if stored < 0 {
				stored, err = i, ctx.Err()
			}
			return stored, len(futures), seq, err
		}
	}
	if stored >= 0 {
		return stored, len(futures), seq, err
	}
	return len(futures), len(futures), seq, sendErr
}

// batched tells whether write writes window in one atomic batch.
func (p *Publisher) batched(window []*nats.Msg, mode writeMode) bool {
	return mode == writeFirst && p.batching() && len(window) >= auditMinBatch
}

// batching tells whether the writer sends atomic batches now: the stream
// allows them, and has not refused one lately as it allows none.
func (p *Publisher) batching() bool {
	return p.allowAtomic.Load() && !time.Now().Before(p.noBatchesUntil)
}

// batchesDisabled tells whether err is the stream's refusal of any batch
// (allow_atomic off).
func batchesDisabled(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == errCodeBatchesDisabled
}

// writeInTurn writes window's events one by one, each once the one before
// it is stored, and returns as write does; with untilNew, it stops after
// the first event the stream had not stored before (its answer is no
// duplicate): those after it were never written, so that a batch of them
// is neither refused for an earlier copy nor stored after a later one.
func (p *Publisher) writeInTurn(ctx context.Context, window []*nats.Msg, untilNew bool) (stored, sent int, seq uint64, err error) {
	for i, m := range window {
		f, err := p.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
		if err != nil {
			return i, i, seq, err
		}
		select {
		case ack := <-f.Ok():
			seq = ack.Sequence
			if untilNew && !ack.Duplicate {
				return i + 1, i + 1, seq, nil
			}
		case err := <-f.Err():
			return i, i + 1, seq, err
		case <-ctx.Done():
			return i, i + 1, seq, ctx.Err()
		}
	}
	return len(window), len(window), seq, nil
}

// storedAfter returns the message ids of the events of window that the
// audit stream holds after the sequence after (a lower bound of where a
// write without an answer can be) of the stream made at of, read as
// headers only, and when the stream it read was made (zero: none). A
// stream made at another time (deleted and made again since) is read
// from its start: its sequences started at 1 again.
func (p *Publisher) storedAfter(ctx context.Context, after uint64, of time.Time, window []*nats.Msg) (map[string]bool, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	want := make(map[string]bool, len(window))
	for _, m := range window {
		want[m.Header.Get(jetstream.MsgIDHeader)] = true
	}
	held := map[string]bool{}
	stream, err := p.js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Gone (an operator deleted it): it holds none of them, and the
		// write that follows makes it again (recreate). Taken for a
		// failure, the writer looked again forever and never wrote.
		return held, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	made := stream.CachedInfo().Created
	if !made.Equal(of) {
		after = 0
	}
	if stream.CachedInfo().State.LastSeq <= after {
		return held, made, nil
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     p.prefix + ".audit.>",
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	// As many as the consumer had pending when made are read, or the
	// look is not known to be whole.
	total, seen := cons.CachedInfo().NumPending, uint64(0)
	for pending := total > 0; pending; {
		batch, err := cons.FetchNoWait(1000)
		if err != nil {
			return nil, time.Time{}, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			seen++
			if id := m.Headers().Get(jetstream.MsgIDHeader); want[id] {
				held[id] = true
			}
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				pending = false
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, time.Time{}, err
		}
		if n == 0 {
			if seen < total {
				return nil, time.Time{}, fmt.Errorf("events: audit stream: %d of %d events read after sequence %d", seen, total, after)
			}
			pending = false
		}
	}
	return held, made, nil
}

// logDropped logs how many events were dropped, the queue full, since it
// last did: at once when final (the writer stops) or the writer caught up,
// else at most every dropLogEvery, so that a sustained overload, dropping
// events between every write round, logs a line now and then, not one
// per round.
func (p *Publisher) logDropped(final bool) {
	p.mu.Lock()
	caughtUp := len(p.queue) == 0
	if caughtUp {
		p.overflowing = false
	}
	if !final && !caughtUp && time.Since(p.droppedLogged) < dropLogEvery {
		p.mu.Unlock()
		return
	}
	dropped := p.dropped
	p.dropped = 0
	if dropped > 0 {
		p.droppedLogged = time.Now()
	}
	p.mu.Unlock()
	if dropped > 0 {
		p.log.Error("audit events dropped: the audit queue was full", "lost", dropped, "queue", auditMaxQueue)
	}
}

// writeBatch writes audit events as one atomic batch and waits for its
// commit. A batch that is not stored, or whose answer is lost, is written
// again event by event; the message ids make an event that was stored
// after all count once.
func (p *Publisher) writeBatch(ctx context.Context, batch []*nats.Msg) (uint64, error) {
	// A commit takes milliseconds, or seconds while a stream leader is
	// elected; one that takes longer (its messages were lost with the
	// connection, say) is given up soon, as the retries store each event
	// once whether or not the batch was stored.
	ctx, cancel := context.WithTimeout(ctx, batchCommitTimeout)
	defer cancel()
	ack, err := jsbatch.Publish(ctx, p.svc, batch)
	if err != nil {
		return 0, err
	}
	p.batches.Add(1)
	return ack.Seq, nil
}

// wait waits, until ctx ends, for done to hold (checked under p.mu, each
// time idle is broadcast), in its caller's goroutine, and tells whether it
// held.
func (p *Publisher) wait(ctx context.Context, done func() bool) bool {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for !done() && ctx.Err() == nil {
		p.idle.Wait()
	}
	return done()
}

// Flush waits, at most timeout, for the audit writes in flight; the
// connection stays open, and the publisher may go on. It returns an error
// when some were not stored in that time, or were given up since the last
// Flush.
func (p *Publisher) Flush(timeout time.Duration) error {
	if p.js == nil {
		return nil
	}
	// Flush waits in its caller's goroutine and leaves none behind: a
	// goroutine that waited in its place outlived a Flush (or Close) that
	// timed out, for as long as the writes went on (in an outage, until
	// the retries gave up; under steady load, possibly never), one more
	// for each such call. The deadline wakes the wait.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := p.wait(ctx, func() bool { return len(p.queue) == 0 })
	// Losses since the last Flush, not only those during this one: the
	// writer gives up an event as soon as it knows it cannot be stored.
	p.mu.Lock()
	queued := len(p.queue)
	lost := p.lost - p.reported
	p.reported = p.lost
	p.mu.Unlock()
	if !done {
		return fmt.Errorf("events: %d audit writes not confirmed within %s (%d lost)", queued, timeout, lost)
	}
	if lost > 0 {
		return fmt.Errorf("events: %d audit writes lost", lost)
	}
	return nil
}

// Close sends the queued system-account events and flushes the audit
// writes, at most timeout, and stops the audit writer, which gives up what
// is left then; events published later are still sent and written (by a
// sender and a writer started for them). It returns what Flush returned,
// and an error when system-account events were given up.
func (p *Publisher) Close(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if p.js == nil {
		return p.closeSys(deadline)
	}
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	cancel := p.cancel
	p.mu.Unlock()
	if first {
		time.AfterFunc(timeout, cancel)
		close(p.stop)
	}
	err := p.Flush(timeout)
	// At the deadline, the writer that runs then gives up what is left,
	// whichever it is: the timer above stops only the writer that ran at
	// the first Close, and one started since, for events published after
	// it, ran on past a later Close until its own auditTimeout (with the
	// server away), that Close returning a second after its timeout and
	// leaving it running, its events not counted lost.
	// (Under the lock, so that it is the writer of these events; and
	// only once the deadline passed: an event published as a Flush that
	// was done returned is written.)
	p.mu.Lock()
	if len(p.queue) > 0 && !time.Now().Before(deadline) {
		p.cancel()
	}
	p.mu.Unlock()
	// The writer stops at once when the queue is empty, and at the
	// deadline else.
	ctx, stop := context.WithTimeout(context.Background(), time.Second)
	defer stop()
	p.wait(ctx, func() bool { return !p.writing })
	p.logDropped(true)
	return errors.Join(err, p.closeSys(deadline))
}

// Audit pages through the audit stream.
type Audit struct {
	js     jetstream.JetStream
	prefix string
	// beforeConsumer, set by tests only, runs between the read of the
	// stream's info and the create of a page's consumer.
	beforeConsumer func()
}

// NewAudit returns a reader of the audit stream on a connection in the
// service's own account.
func NewAudit(svc *nats.Conn, prefix string) (*Audit, error) {
	js, err := jetstream.New(svc)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	return &Audit{js: js, prefix: prefix}, nil
}

// pageErr is a failure of Page to reach the audit stream. A stream an
// operator deleted is made again by the writer with the next event only:
// answered as unavailable, a read until then was told to try again, for
// ever; it is not found, and said so.
func pageErr(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("events: %w: the audit stream %s is gone (deleted); the next event makes it again, its sequences starting over at 1: page it from 0 then: %w", provision.ErrNotFound, StreamName, err)
	}
	return fmt.Errorf("events: audit stream: %w", err)
}

// Page returns up to limit events of an account ("" for every account)
// after the stream sequence after, the sequence to go on from (0 when
// there are no more), and when the stream was made, which a caller sends
// with the sequence it goes on from as made (zero: not checked). A stream
// made at another time is a provision.ErrConflict for an after past 0: it
// is not the stream the cursor counts in (deleted and made again since,
// its sequences starting over at 1), and read from after, its first
// records were skipped, or another stream's position taken for its own.
func (a *Audit) Page(ctx context.Context, account string, after uint64, made time.Time, limit int) ([]api.AuditEntry, uint64, time.Time, error) {
	if limit <= 0 || limit > api.MaxAuditLimit {
		limit = api.DefaultAuditLimit
	}
	filter := a.prefix + ".audit.>"
	if account != "" {
		filter = a.prefix + ".audit." + account + ".>"
	}
	// A page read while the stream was made again is read again: from
	// the new stream's info, a cursor of the old one is then refused.
	for try := 1; ; try++ {
		out, next, created, err := a.page(ctx, filter, after, made, limit)
		if !errors.Is(err, errMadeAgain) || try == pageTries {
			return out, next, created, err
		}
	}
}

// pageTries bounds the reads of a page whose stream was made again while
// it was read, each time.
const pageTries = 3

// errMadeAgain is the audit stream deleted and made again while a page
// was read.
var errMadeAgain = errors.New("events: the audit stream was deleted and made again while a page of it was read; try again")

// page is Page for one read of the stream's info: errMadeAgain when the
// stream read was not the one the info was of.
func (a *Audit) page(ctx context.Context, filter string, after uint64, made time.Time, limit int) ([]api.AuditEntry, uint64, time.Time, error) {
	stream, err := a.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, 0, time.Time{}, pageErr(err)
	}
	// A cursor past the stream's last sequence is from no page of this
	// stream (its sequences never go back): it is from a stream deleted
	// since and made again, whose sequences started over at 1. Answered
	// with an empty page, a client polling on from it skipped, silently,
	// every record of the new stream until it grew past the cursor.
	st := stream.CachedInfo()
	if after > 0 && !made.IsZero() && !made.Equal(st.Created) {
		return nil, 0, time.Time{}, fmt.Errorf("events: %w: \"after\" %d is a sequence of the audit stream made at %s (\"stream_created\"); the audit stream %s was deleted and made again at %s, its sequences starting over at 1: page again from 0",
			provision.ErrConflict, after, made.UTC().Format(time.RFC3339Nano), StreamName, st.Created.UTC().Format(time.RFC3339Nano))
	}
	if after > st.State.LastSeq && st.Cluster != nil && st.Cluster.Leader == "" {
		// Without a leader (an election under way) any replica answers
		// the info with what it has applied itself, which may be behind
		// the records a client already read from the leader: no sign of
		// a stream made again. Asked again once there is a leader.
		return nil, 0, time.Time{}, fmt.Errorf("events: audit stream %s has no leader (an election under way); its replica's last record %d may be behind \"after\" %d", StreamName, st.State.LastSeq, after)
	}
	if after > st.State.LastSeq {
		return nil, 0, time.Time{}, fmt.Errorf("events: %w: \"after\" %d is past the audit stream's last record (%d): it is not a sequence of this stream, which was made again at %s (deleted, its sequences starting over at 1), or never was one; page again from 0",
			provision.ErrInvalid, after, st.State.LastSeq, st.Created.UTC().Format(time.RFC3339))
	}
	if after == math.MaxUint64 {
		// A stream whose last record is the last sequence there can be:
		// nothing comes after it (and after+1 would wrap to the start).
		// Any other stream refused this cursor above, as past its end.
		return nil, 0, st.Created, nil
	}
	if a.beforeConsumer != nil {
		a.beforeConsumer()
	}
	// One consumer for this page, deleted once it is read: the server
	// allows 1,000 consumers per stream by default, and the ordered
	// consumer used before left one behind per page (two made, one
	// deleted), each until its inactive threshold, so that a client paging
	// through the audit was refused at its thousandth page within a few
	// seconds, as was every prov.audit until they expired.
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: filter,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   after + 1,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		Replicas:      1,
		// The server forgets a consumer whose delete was lost soon
		// after, instead of keeping one per request for minutes.
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return nil, 0, time.Time{}, pageErr(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	batch, err := cons.FetchNoWait(limit + 1)
	if err != nil {
		return nil, 0, time.Time{}, fmt.Errorf("events: audit stream: %w", err)
	}
	var out []api.AuditEntry
	var next, last uint64
	delivered := 0
	for m := range batch.Messages() {
		delivered++
		meta, err := m.Metadata()
		if err != nil {
			continue
		}
		if len(out) == limit {
			next = out[len(out)-1].Seq
			break
		}
		last = meta.Sequence.Stream
		var e api.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			continue
		}
		out = append(out, api.AuditEntry{Seq: meta.Sequence.Stream, Event: e})
	}
	if next == 0 && delivered > limit {
		// Entries skipped on the way: more may follow the last one read.
		next = last
	}
	// The consumer was made on the stream there was then, which the
	// info read before may not be: deleted and made again in between,
	// the page is of the new stream, its cursor of the old one told to go
	// on in it, without the conflict its creation time is for. Neither
	// the consumer's info nor the records' metadata says which stream
	// they are of; the stream's info read again does: the same creation
	// time is the same stream (a stream deleted is not made again with
	// it), which had the consumer in between. An empty page is not
	// checked (one read more for each poll that finds nothing new): it
	// has no records to take for another stream's, and no cursor, the
	// client going on from the one it sent, which the next page checks.
	if delivered > 0 {
		info, err := stream.Info(ctx)
		if err != nil {
			return nil, 0, time.Time{}, pageErr(err)
		}
		if !info.Created.Equal(st.Created) {
			return nil, 0, time.Time{}, fmt.Errorf("%w (made at %s, now at %s)", errMadeAgain,
				st.Created.UTC().Format(time.RFC3339Nano), info.Created.UTC().Format(time.RFC3339Nano))
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return out, next, st.Created, fmt.Errorf("events: audit stream: %w", err)
	}
	return out, next, st.Created, nil
}

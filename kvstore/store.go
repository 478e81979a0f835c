// Package kvstore keeps the provisioner's state in a JetStream key-value
// bucket, so that several instances of the service can run side by side
// with no state of their own. It implements provision.Store.
//
// The bucket lives in the service's own account (the system account cannot
// use JetStream), reached through a connection made with that account's
// creds. It holds:
//
//	acct.<account public key>  the account record: name, sealed identity
//	                           and signing seeds with their roles, JWT,
//	                           phase, deletion time
//	name.<base64url(name)>     the public key of the account holding the name
//	user.<user public key>     the record of an issued user
//	lease.<name>               a lease: which instance holds it
//
// Seeds are written only sealed (package seal). An account's revision is
// the KV revision of its acct. entry, so an update is a compare-and-set on
// it. A name is claimed by creating its name. entry; a name entry whose
// account is missing or no longer live is free and is taken over with a
// compare-and-set at its revision. An account is created in two writes:
// claim the name, then write the record at a key never written before (a
// take-over of a name first voids its holder's key, so a create that lost
// its name cannot write there). Only when the key was written before does
// a third write, the name entry again at the revision it was claimed with,
// fence out anyone who took the name over in between (CreateAccount). A
// live record that its name entry does not point to (a create that lost
// such a race, or crashed before backing out) is not shown at all and is
// removed when a store opens, unless its name entry names an account of
// another name, or one with no record and was written after the record:
// damage, and the record is kept.
//
// Reads come from an in-memory mirror of the bucket that a watcher keeps up
// to date, with an index per name and per user; seeds are opened once,
// when a record enters the mirror. A store's own writes are in its mirror
// as soon as they are acknowledged; other instances' writes arrive through
// the watcher, typically within milliseconds. A watchdog compares the
// watcher's progress with the stream every second and, when the watcher
// has fallen silent (after the loss of a server), reads what it missed
// and starts a new one. The bucket's stream has direct gets off, so the
// reads that go to the bucket (an account the mirror lacks, a name being
// taken over, a write whose answer was lost) are answered by the stream
// leader, never by a lagging replica.
//
// TryLease and ReleaseLease give one instance at a time a named lease,
// such as the right to reconcile, or to work on one account.
package kvstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/natsprov/provisioner/jsmake"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/seal"
)

var _ provision.Store = (*Store)(nil)

// Errors of Open and of a closed store.
var (
	// ErrNoSealKey: Open was given no seal key; seeds are stored only
	// sealed.
	ErrNoSealKey = errors.New("kvstore: a seal key is required (seeds are stored only sealed)")
	// ErrNoJetStream: the account the connection belongs to cannot use
	// JetStream.
	ErrNoJetStream = errors.New("kvstore: JetStream is not enabled for the account")
	// ErrBucketMismatch: the bucket exists with settings other than the
	// configured ones.
	ErrBucketMismatch = errors.New("kvstore: bucket settings differ from the configuration")
	// ErrNoBucket: the bucket does not exist and Options.Existing forbade
	// making it.
	ErrNoBucket = errors.New("kvstore: the bucket does not exist")
	// ErrClosed: the store is closed. It matches provision.ErrUnavailable
	// too.
	ErrClosed = errors.New("kvstore: store is closed")
	// ErrUnconfirmed: Close gave up user records not confirmed within
	// CloseTimeout (each logged, by key, at ERROR).
	ErrUnconfirmed = errors.New("user records not confirmed")
)

// Key prefixes in the bucket.
const (
	accountPrefix = "acct."
	namePrefix    = "name."
	userPrefix    = "user."
	packPrefix    = "upack."
	leasePrefix   = "lease."
)

// history is the number of values the bucket keeps per key: the latest is
// all the store reads, and compare-and-set needs nothing older.
const history = 1

// Options configure a Store.
type Options struct {
	// Bucket names the KV bucket. Default "provisioner".
	Bucket string
	// Replicas is the bucket's replica count when Open creates it, and
	// what an existing bucket must have. 0 chooses: 3 when the servers
	// form a JetStream cluster that can place three replicas, else 1 (with
	// a warning); an existing bucket is then taken as it is.
	Replicas int
	// Seal seals the seeds written and opens those read. Required.
	Seal *seal.Key
	// Instance names this instance in leases and logs. Default: host name
	// and process id.
	Instance string
	// Logger receives warnings and errors. Default: discard.
	Logger *slog.Logger
	// Timeout bounds each request to JetStream whose context has no
	// deadline, and each acknowledgement of an asynchronous write.
	// Default 5s.
	Timeout time.Duration
	// CloseTimeout bounds how long Close waits for asynchronous writes
	// still in flight. Default 10s.
	CloseTimeout time.Duration
	// StreamUnreadable, when set, is called (in the watchdog's goroutine;
	// it must not block) each time the bucket's stream stops answering
	// the watchdog: its leader is gone, often with its server (the
	// service asks the resolver to ping the servers: resolver.Client's
	// CheckServers).
	StreamUnreadable func()
	// Existing makes Open fail with ErrNoBucket when the bucket is missing,
	// instead of making it: for tools that act on a store that must be
	// there (store reseal), which an empty bucket made by a mistyped
	// nats_url would answer with nothing to do.
	Existing bool
	// JetStreamWait is how long Open, on a cluster, asks again when the
	// servers say JetStream is not enabled for the account, or cannot
	// place the new bucket's replicas because a server is offline, before
	// it takes them at their word. Default 30s.
	JetStreamWait time.Duration
}

var bucketName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (o *Options) setDefaults() {
	if o.Bucket == "" {
		o.Bucket = "provisioner"
	}
	if o.Instance == "" {
		host, _ := os.Hostname()
		o.Instance = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 10 * time.Second
	}
	if o.JetStreamWait <= 0 {
		o.JetStreamWait = 30 * time.Second
	}
}

func (o *Options) validate() error {
	if o.Seal == nil {
		return ErrNoSealKey
	}
	if !bucketName.MatchString(o.Bucket) {
		return fmt.Errorf("kvstore: bucket name %q: use letters, digits, '-' and '_'", o.Bucket)
	}
	if o.Replicas < 0 || o.Replicas > 5 {
		return fmt.Errorf("kvstore: replicas %d: JetStream allows 1 to 5 (0 chooses)", o.Replicas)
	}
	return nil
}

// Store is the state of the service in a JetStream KV bucket, shared by
// every instance that opens the same bucket. It is safe for concurrent
// use. Open it with Open and release it with Close.
type Store struct {
	opts     Options
	log      *slog.Logger
	seal     *seal.Key
	js       jetstream.JetStream
	bulkJS   jetstream.JetStream // for removals, without the callbacks of js
	kv       jetstream.KeyValue
	subject  string // the bucket's subject prefix, "$KV.<bucket>."
	token    string // tells this Store's leases from another's with the same Instance
	replicas int

	mu     sync.RWMutex
	m      *mirror
	closed bool
	// madeAt is when the bucket's stream was made, as Open found it;
	// lost is set, for good, once the watchdog finds the bucket deleted
	// or replaced (lose).
	madeAt time.Time
	lost   error

	// Asynchronous user writes: the pending ones by key, and those to try
	// again.
	amu      sync.Mutex
	pending  map[string]*pendingWrite
	retryq   []*pendingWrite
	retrySig chan struct{}
	retries  sync.WaitGroup
	// rmu guards retriesDone, set once Close waits for retries: an Add
	// after that would meet its Wait at a zero count, or follow it and
	// leave a goroutine running after Close (goRetry).
	rmu         sync.Mutex
	retriesDone bool
	// With atomic batches (batch.go): the writes waiting for the next
	// batch, a signal for the batch loop, and a slot per queued write.
	atomicBatches bool
	queue         []*pendingWrite
	queueSig      chan struct{}
	queueRoom     chan struct{}
	nc            *nats.Conn
	// noBatchesUntil (Unix nanoseconds, 0: none): the stream refused a
	// batch as it allows none (an operator set allow_atomic false while
	// the store ran), so that no window of a batch's worth until then
	// costs a batch refused before its records go one by one.
	noBatchesUntil atomic.Int64
	batchesOff     time.Duration // batchesOffFor when Open ran

	// writing holds the users of this store's packs being written, by
	// key, so that the watcher, which often brings a pack before its
	// write returns, need not decode it (pack.go).
	writing sync.Map

	// full is set while writes find the bucket without room (users.go).
	full atomic.Bool

	// loaded is set once Open has loaded the bucket. From then on, an
	// account record sealed with a key this instance lacks was written by
	// an instance running with another seal_key, or was hidden at Open and
	// is shown since, sealed with a key rotated away: fmu guards foreign,
	// the public keys of those keys, in the order met (SealProblem).
	loaded  atomic.Bool
	fmu     sync.Mutex
	foreign []string

	// User records of removed accounts to remove (strays.go).
	smu      sync.Mutex
	strays   []stray
	straySig chan struct{}

	// Name entries to write back (nameBackLater), by name key, and a
	// signal for the loop that writes them.
	nmu     sync.Mutex
	names   map[string]sweepOrphan
	nameSig chan struct{}

	lmu    sync.Mutex
	leases map[string]leaseSeen // lease key -> the other holder's revision, when first seen
	held   map[string]bool      // lease keys this store holds

	stop chan struct{}
	// life ends when the store closes; watchers are tied to it.
	life    context.Context
	endLife context.CancelFunc
	// restartWatch asks the watch goroutine for a new watcher.
	restartWatch chan struct{}
	restarting   atomic.Bool // a restart is asked for and not done
	stream       jetstream.Stream
	watcher      sync.WaitGroup
	workers      sync.WaitGroup

	// fault, set by tests only, is called at named points between the
	// steps of a change; an error it returns stops the change there, as a
	// crash would.
	fault func(point string) error
	// gatherHook, set by tests only, runs before the batch loop takes
	// what is queued (it runs alongside everything else, hence atomic).
	gatherHook atomic.Pointer[func()]
	// packHook, set by tests only, runs before a pack of user records is
	// written, with its key; an error it returns fails the write.
	packHook atomic.Pointer[func(key string) error]
	// givenUpHook, set by tests only, runs in a durable add whose caller
	// gave up while its record waited for its batch, before it looks at
	// where the record is (it runs alongside the batch loop, hence atomic).
	givenUpHook atomic.Pointer[func()]
	// nameBackHook, set by tests only, runs in the name loop once it has
	// checked a name entry is still to write back, before it writes it.
	nameBackHook atomic.Pointer[func()]
	// catchUpHook, set by tests only, runs in the watchdog's catch-up
	// before it reads the entry at a revision.
	catchUpHook atomic.Pointer[func(rev uint64)]
	// retryHook, set by tests only, runs in a retry of a user record once
	// it has checked the store is not lost, before it writes, with the
	// record's key.
	retryHook atomic.Pointer[func(key string)]
}

// beforeSweep runs, in tests only, once Open's sweep has taken from the
// loaded mirror what looks left behind, before it removes anything.
var beforeSweep = func() {}

// beforeBucketCreate runs, in tests only, before each attempt of Open to
// create the bucket's stream with more than one replica.
var beforeBucketCreate = func() {}

// at runs the test fault point named point.
func (s *Store) at(point string) error {
	if s.fault == nil {
		return nil
	}
	return s.fault(point)
}

// Open opens the bucket on nc, a connection of the service's own account,
// creating the bucket when it is missing, and returns once the store's
// mirror holds the whole bucket. It fails with ErrNoSealKey, ErrNoJetStream
// (the account's JWT gives it no JetStream) or ErrBucketMismatch, naming
// what is wrong, and with provision.ErrUnavailable when JetStream does not
// answer.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("kvstore: a NATS connection is required")
	}
	s := &Store{
		opts:         opts,
		log:          opts.Logger.With("bucket", opts.Bucket, "instance", opts.Instance),
		seal:         opts.Seal,
		subject:      "$KV." + opts.Bucket + ".",
		token:        nuid.Next(),
		pending:      map[string]*pendingWrite{},
		retrySig:     make(chan struct{}, 1),
		queueSig:     make(chan struct{}, 1),
		straySig:     make(chan struct{}, 1),
		names:        map[string]sweepOrphan{},
		nameSig:      make(chan struct{}, 1),
		queueRoom:    make(chan struct{}, maxQueued),
		nc:           nc,
		restartWatch: make(chan struct{}, 1),
		leases:       map[string]leaseSeen{},
		held:         map[string]bool{},
		stop:         make(chan struct{}),
	}
	s.life, s.endLife = context.WithCancel(context.Background())
	js, err := jetstream.New(nc,
		jetstream.WithDefaultTimeout(opts.Timeout),
		jetstream.WithPublishAsyncTimeout(opts.Timeout),
		jetstream.WithPublishAsyncAckHandler(s.asyncAcked),
		jetstream.WithPublishAsyncErrHandler(s.asyncFailed),
	)
	if err != nil {
		return nil, fmt.Errorf("kvstore: %w", err)
	}
	s.js = js
	if s.bulkJS, err = jetstream.New(nc, jetstream.WithDefaultTimeout(opts.Timeout), jetstream.WithPublishAsyncTimeout(opts.Timeout)); err != nil {
		return nil, fmt.Errorf("kvstore: %w", err)
	}
	if err := s.openBucket(ctx, nc); err != nil {
		s.endLife()
		return nil, err
	}
	start := time.Now()
	kw, err := s.load(ctx)
	if err != nil {
		s.endLife()
		return nil, err
	}
	s.loaded.Store(true)
	s.watcher.Add(1)
	go s.watch(kw)
	s.workers.Add(5)
	go s.retryLoop()
	go s.batchLoop()
	go s.watchdog()
	go s.strayLoop()
	go s.nameLoop()
	s.sweep(ctx)

	s.mu.RLock()
	accounts, users := len(s.m.accounts), len(s.m.users)
	s.mu.RUnlock()
	s.log.Info("kvstore open", "replicas", s.replicas, "accounts", accounts, "users", users, "load", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// openBucket binds the bucket, creating it when missing, and checks its
// settings.
func (s *Store) openBucket(ctx context.Context, nc *nats.Conn) error {
	info, err := s.accountInfo(ctx, nc)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%w: give the service account JetStream limits in its JWT (non-zero disk_storage, e.g. `nsc edit account <name> --js-disk-storage 1G --js-mem-storage 64M`, then push it); the system account can never use JetStream, connect with the service account's creds", ErrNoJetStream)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		// A single server also refuses an account whose limits, summed
		// over its tiers (init's R1 and R3: 8 GiB of disk, 512 MiB of
		// memory), exceed its max_file_store or max_memory_store (75% of
		// the free disk and memory by default): then both jetstream {}
		// and the limits are there, and only the server's log says why.
		return fmt.Errorf("%w: no JetStream answered (enable jetstream {} in the servers' configuration, or the account's JWT lacks mem_storage/disk_storage limits; or a single server refused the account's limits: it checks their sum over the tiers, 8 GiB of disk and 512 MiB of memory for init's R1 and R3, against its max_file_store and max_memory_store, by default 75%% of the free disk and memory, and logs \"insufficient storage (or memory) resources available\": raise those, or lower or remove tiers in the account's JWT)", ErrNoJetStream)
	case err != nil:
		return mapErr("account info", err)
	}

	kv, err := s.js.KeyValue(ctx, s.opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if s.opts.Existing {
			return fmt.Errorf("%w: no bucket %q in the account of these creds on %s", ErrNoBucket, s.opts.Bucket, nc.ConnectedUrlRedacted())
		}
		kv, err = s.createBucket(ctx, nc, info)
	}
	if errors.Is(err, ErrNoJetStream) {
		// Its 10120 is no change of limits that a restart mends.
		return fmt.Errorf("kvstore: bucket %s: %w", s.opts.Bucket, err)
	}
	if err != nil {
		return mapErr("bucket "+s.opts.Bucket, err)
	}
	s.kv = kv
	if s.stream, err = s.js.Stream(ctx, "KV_"+s.opts.Bucket); err != nil {
		return mapErr("bucket stream", err)
	}
	if err := s.checkBucket(ctx, nc); err != nil {
		return err
	}
	return s.awaitWritable(ctx)
}

// accountInfo asks for the account's JetStream. A cluster that is starting
// answers that JetStream is not enabled for the account until its
// JetStream is up (seen in about one start in eight of a bench cluster on
// a loaded machine); on a cluster the question is asked again for
// JetStreamWait before the answer is taken as the account's settings.
func (s *Store) accountInfo(ctx context.Context, nc *nats.Conn) (*jetstream.AccountInfo, error) {
	deadline := time.Now().Add(s.opts.JetStreamWait)
	for logged := false; ; {
		info, err := s.js.AccountInfo(ctx)
		notEnabled := errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
		if !notEnabled || !clustered(nc) || time.Now().After(deadline) {
			return info, err
		}
		if !logged {
			s.log.Info("kvstore: the cluster says JetStream is not enabled for the account; asking again while it may be starting", "for", s.opts.JetStreamWait, "error", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			// Stopped before the wait was over: the answer so far is no
			// refusal of the account, and the caller must see the stop
			// (service.Run takes only that for a clean exit).
			return nil, fmt.Errorf("the cluster still says JetStream is not enabled for the account (%v); gave up asking again: %w", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// awaitWritable waits until the bucket's stream answers writes. A stream
// just created in a cluster may have no leader yet, or its subjects may
// not be known yet to the server the connection is on; writes then find
// no responder. The probe is a write that expects a revision its key
// cannot have, so the stream refuses it and nothing is stored.
func (s *Store) awaitWritable(ctx context.Context) error {
	probe := nats.NewMsg(s.subject + leasePrefix + "_probe")
	for {
		_, err := s.js.PublishMsg(ctx, probe, jetstream.WithExpectLastSequencePerSubject(math.MaxUint64))
		var apiErr *jetstream.APIError
		if noLimits(err) {
			// Refused for want of its tier's limits (in a cluster, the
			// leader checks them before the revision): every write is,
			// until the servers restart. Taken for "writable", the
			// instance started while every change failed; unavailable,
			// the service waits, saying to restart them.
			// Unless the account's tiers lack the bucket's replica
			// count (taken out): no restart adds it, and waited on,
			// the start never ended.
			if info, ierr := s.js.AccountInfo(ctx); ierr == nil && len(info.Tiers) > 0 {
				// A tier the bucket's stream uses is listed for its
				// usage, with zero limits once taken out.
				if tier, ok := info.Tiers[fmt.Sprintf("R%d", s.replicas)]; !ok || tier.Limits == (jetstream.AccountLimits{}) {
					return fmt.Errorf("kvstore: bucket %s: %w", s.opts.Bucket, tierless(err, s.replicas))
				}
			}
			return mapErr("bucket does not answer writes", err)
		}
		if err == nil || errors.As(err, &apiErr) && apiErr.Code != http.StatusServiceUnavailable {
			return nil
		}
		if !transient(err) || ctx.Err() != nil {
			return mapErr("bucket does not answer writes", err)
		}
		if s.nc.IsClosed() {
			// Closed for good (creds expired or revoked): every probe
			// fails "connection closed", and retried until ctx ends, the
			// service's start (whose ctx never ends) neither served nor
			// exited. The caller tells the closed connection.
			return mapErr("bucket does not answer writes: the NATS connection is closed", err)
		}
		select {
		case <-ctx.Done():
			return mapErr("bucket does not answer writes", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		probe = nats.NewMsg(probe.Subject)
	}
}

// clustered reports whether the server the connection is on is part of a
// cluster: the INFO it sent names one. Whether the cluster runs JetStream
// on three servers is only known by asking its meta leader to place three
// replicas.
func clustered(nc *nats.Conn) bool { return nc.ConnectedClusterName() != "" }

// streamConfig is the stream of the bucket: the settings
// jetstream.CreateKeyValue gives a KV bucket, but with direct gets off, so
// that every read of the bucket (the mirror's fetches, the reads that
// decide whether a name is free or a write was stored) is answered by the
// stream leader, never by a replica that lags behind it.
func (s *Store) streamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + s.opts.Bucket,
		Description:       "provisioner state: accounts (seeds sealed), names, users, leases",
		Subjects:          []string{s.subject + ">"},
		MaxMsgsPerSubject: history,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		// No purges and no roll-ups: the store only ever deletes a key at
		// a revision, and one message with a roll-up header (or a purge)
		// from anyone holding the service's creds could wipe every
		// account's keys.
		AllowRollup: false,
		DenyPurge:   true,
		DenyDelete:  true,
		Duplicates:  2 * time.Minute,
		Discard:     jetstream.DiscardNew,
		// Direct gets skip the JetStream API (a read after each push costs
		// the server about a third as much), but every replica answers
		// them, a follower possibly before it has applied a write that was
		// acknowledged: on one replica only, where the one server answering
		// is the one that stored the write.
		AllowDirect: replicas == 1,
		// User records are written in atomic batches (batch.go).
		AllowAtomicPublish: true,
	}
}

func (s *Store) createBucket(ctx context.Context, nc *nats.Conn, info *jetstream.AccountInfo) (jetstream.KeyValue, error) {
	if !diskAllowed(info) {
		return nil, fmt.Errorf("%w: the account's JWT gives it no disk storage (disk_storage is 0) and the bucket uses file storage", ErrNoJetStream)
	}
	replicas := s.opts.Replicas
	switch {
	case replicas == 0 && clustered(nc):
		kv, err := s.createReplicated(ctx, nc, 3, true)
		if kv != nil || err != nil {
			return kv, err
		}
		replicas = 1
	case replicas == 0:
		replicas = 1
	case replicas > 1:
		kv, err := s.createReplicated(ctx, nc, replicas, false)
		return kv, tierless(err, replicas)
	}
	// Deleted right before, the bucket was maybe the account's only
	// stream on the server: its make may fail for a moment (jsmake), an
	// answer no ErrUnavailable, which failed the start.
	err := jsmake.Retry(ctx, func() error {
		_, err := s.js.CreateStream(ctx, s.streamConfig(replicas))
		return err
	})
	kv, err := s.bound(ctx, err, replicas)
	return kv, tierless(err, replicas)
}

// tierless tells a bucket refused at its creation for want of its tier's
// limits (10120: tiered limits without one for its replica count, as for
// a kv_replicas of 5) from the same refusal of an existing
// bucket's writes after the limits changed between flat and tiered: no
// restart creates the tier, so taken for that (unavailable, "restart each
// server") the start waited for ever. It fails naming the tier to add.
func tierless(err error, replicas int) error {
	if !noLimits(err) {
		return err
	}
	return fmt.Errorf("%w: the account's JWT has JetStream limits per tier but none for R%d, the bucket's %d replica(s); add it (`nsc edit account <service account> --js-tier %d --js-disk-storage 4G --js-mem-storage 256M`, then push it): %w", ErrNoJetStream, replicas, replicas, replicas, err)
}

// createReplicated creates the bucket with replicas replicas, on a
// cluster. When the meta leader cannot place them for want of servers or
// room, it returns neither bucket nor error if fallback (replicas not set:
// the bucket then gets one, with a warning), and the refusal otherwise.
//
// When the meta leader knows fewer servers than the replicas ("no
// suitable peers for placement" with no reason: a cluster still forming,
// or one of fewer servers, which only the wait tells apart), or answers
// that a server it knows is offline ("peer
// offline": not heard from since it started, as when compose starts every
// server and instance at once; seen in tests of three processes), or a
// member of its group it has no word of at all ("miscellaneous issue": a
// cluster restarted without one of its servers, TestOpenWaitsForAServerItKnows;
// the server's max_ha_assets reached says the same), the cluster has the
// servers but not all of them up; when it answers 503, it is being
// elected. Settling for
// one replica then would leave the bucket on one server for good, and
// the deployment without the HA it was built for, after a moment's bad
// timing. So Open asks again for JetStreamWait and then refuses, naming
// the way out.
// noPeersNoReason is the meta leader's answer when it knows fewer servers
// than the replicas asked for: a cluster that has fewer, or one still
// forming, whose other servers have not joined its meta group yet (met
// under load right after every server answered JetStream). The two cannot
// be told apart, so it is asked again as for a server offline.
const noPeersNoReason = "no suitable peers for placement"

func (s *Store) createReplicated(ctx context.Context, nc *nats.Conn, replicas int, fallback bool) (jetstream.KeyValue, error) {
	deadline := time.Now().Add(s.opts.JetStreamWait)
	for logged := false; ; {
		// A server that cannot make its replica's store (as right after
		// a delete of the account's only stream on it: jsmake) fails the
		// create with 10049, which is no want of servers or room: taken
		// for one, the bucket got a single replica for good.
		err := jsmake.Retry(ctx, func() error {
			beforeBucketCreate()
			_, err := s.js.CreateStream(ctx, s.streamConfig(replicas))
			return err
		})
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return s.bound(ctx, err, replicas)
		}
		if apiErr.Code != http.StatusServiceUnavailable && !strings.Contains(apiErr.Description, "peer offline") && !strings.Contains(apiErr.Description, "miscellaneous issue") && apiErr.Description != noPeersNoReason {
			if !fallback {
				return nil, fmt.Errorf("kvstore: the cluster cannot place the bucket's %d replicas (kv_replicas): %w", replicas, err)
			}
			s.log.Warn("kvstore: the cluster cannot place three replicas; creating the bucket with one", "cluster", nc.ConnectedClusterName(), "reason", apiErr.Description)
			return nil, nil
		}
		if time.Now().After(deadline) && fallback && apiErr.Description == noPeersNoReason {
			// Fewer servers than three, as far as the wait tells: one
			// replica, as for a cluster of two from the start.
			s.log.Warn("kvstore: the cluster cannot place three replicas; creating the bucket with one", "cluster", nc.ConnectedClusterName(), "reason", apiErr.Description, "asked_for", s.opts.JetStreamWait)
			return nil, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: the cluster cannot place the bucket's %d replicas (%s): a server of the cluster is down or not heard from yet, it has no meta leader, or max_ha_assets is reached; start the server, or set kv_replicas to 1 for a bucket held by one server", provision.ErrUnavailable, replicas, apiErr.Description)
		}
		if !logged {
			s.log.Info("kvstore: a server of the cluster is offline or not known to its meta leader yet, so the bucket's replicas cannot be placed yet; asking again while it may be starting", "replicas", replicas, "for", s.opts.JetStreamWait, "reason", apiErr.Description)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, mapErr("create bucket", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// bound binds the bucket after an attempt to create its stream.
func (s *Store) bound(ctx context.Context, err error, replicas int) (jetstream.KeyValue, error) {
	switch {
	case err == nil:
		s.log.Info("kvstore: bucket created", "replicas", replicas, "storage", "file", "history", history)
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		// Another instance created it meanwhile, maybe with other
		// settings; checkBucket decides.
	default:
		return nil, err
	}
	kv, err := s.js.KeyValue(ctx, s.opts.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		// Created, yet not found: in a cluster the new stream can have
		// no leader to answer its info for a moment. Opening again finds
		// it.
		return nil, fmt.Errorf("%w: created but not yet found: %w", provision.ErrUnavailable, err)
	}
	return kv, err
}

// diskAllowed reports whether the account may use file storage, in any
// tier.
func diskAllowed(info *jetstream.AccountInfo) bool {
	if info.Limits.MaxStore != 0 {
		return true
	}
	for _, t := range info.Tiers {
		if t.Limits.MaxStore != 0 {
			return true
		}
	}
	return false
}

// checkBucket refuses a bucket whose settings are not the store's, naming
// each difference.
func (s *Store) checkBucket(ctx context.Context, nc *nats.Conn) error {
	st, err := s.kv.Status(ctx)
	if err != nil {
		return mapErr("bucket status", err)
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return fmt.Errorf("%w: cannot read the stream settings of bucket %q", ErrBucketMismatch, s.opts.Bucket)
	}
	cfg := bs.StreamInfo().Config
	s.madeAt = bs.StreamInfo().Created
	var diffs []string
	if cfg.Storage != jetstream.FileStorage {
		diffs = append(diffs, fmt.Sprintf("storage %s, want file", strings.ToLower(cfg.Storage.String())))
	}
	if s.opts.Replicas != 0 && cfg.Replicas != s.opts.Replicas {
		diffs = append(diffs, fmt.Sprintf("replicas %d, want %d", cfg.Replicas, s.opts.Replicas))
	}
	if cfg.MaxMsgsPerSubject != history {
		diffs = append(diffs, fmt.Sprintf("history %d, want %d", cfg.MaxMsgsPerSubject, history))
	}
	if cfg.MaxAge != 0 {
		diffs = append(diffs, fmt.Sprintf("ttl %s, want none (records must not expire)", cfg.MaxAge))
	}
	if cfg.Discard == jetstream.DiscardOld && (cfg.MaxMsgs > 0 || cfg.MaxBytes > 0) {
		diffs = append(diffs, "discard old at a limit of messages or bytes, want discard new (the oldest records would be dropped without a word)")
	}
	if cfg.AllowDirect && cfg.Replicas > 1 {
		diffs = append(diffs, "allow_direct true with "+strconv.Itoa(cfg.Replicas)+" replicas, want false (followers would answer reads before they hold the last write; `nats stream edit KV_"+s.opts.Bucket+" --no-allow-direct`)")
	}
	if cfg.AllowRollup || !cfg.DenyPurge {
		// A bucket made by an earlier version allows roll-ups: removing
		// it would lose every account's keys, and the edit that fixes it
		// needs creds that may edit the stream, which the service's may not.
		diffs = append(diffs, "roll-ups or purges allowed, want neither (one such message could wipe the bucket; a bucket made by an earlier version allows roll-ups: with creds that may edit the stream, `nats stream edit KV_"+s.opts.Bucket+" --no-allow-rollup --deny-purge` fixes it, keeping what it holds)")
	}
	if cfg.Sealed {
		// The write probe's refusal is taken for a writable stream: the
		// instance started healthy and every change failed.
		diffs = append(diffs, "sealed, want writable (a sealed stream takes no writes and cannot be unsealed; restore a backup taken before the seal, or move its contents to a new bucket)")
	}
	if cfg.Mirror != nil || len(cfg.Sources) > 0 {
		diffs = append(diffs, "mirrors or sources another bucket, want a bucket of its own")
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%w: bucket %q has %s; fix or remove the bucket, or change the configuration", ErrBucketMismatch, s.opts.Bucket, strings.Join(diffs, "; "))
	}
	s.replicas = cfg.Replicas
	if cfg.Replicas == 1 && !cfg.AllowDirect {
		// A bucket made by an earlier version: reads go through the
		// JetStream API, which costs its server more.
		s.log.Info("kvstore: the bucket's stream does not allow direct gets; reads past the mirror go through the JetStream API (`nats stream edit KV_" + s.opts.Bucket + " --allow-direct` makes them cheaper on a bucket of one replica)")
	}
	s.atomicBatches = cfg.AllowAtomicPublish
	s.batchesOff = batchesOffFor
	if !s.atomicBatches {
		// A bucket made by an earlier version, or a server before 2.12:
		// everything works, user records are written one per message.
		s.log.Info("kvstore: the bucket's stream does not allow atomic batches; user records are written one by one (`nats stream edit KV_" + s.opts.Bucket + " --allow-batch` with a server of 2.12 or later allows them, from this instance's next start: the store reads it at Open)")
	}
	if cfg.Replicas == 1 {
		s.log.Warn("kvstore: the bucket has one replica: while the server that holds it is down no instance can start or change anything, and if its disk is lost every account's keys are lost with it; run three JetStream servers in a cluster for three replicas",
			"clustered", clustered(nc))
	}
	return nil
}

// Replicas returns the bucket's replica count, so that what lives beside
// it (the audit stream) is kept as safely.
func (s *Store) Replicas() int { return s.replicas }

// Close waits, at most Options.CloseTimeout, for asynchronous user writes
// still in flight, releases the leases the store holds, and stops the
// watcher. It returns an error naming how many user records were not
// confirmed. The connection stays open: it belongs to the caller.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	var unconfirmed, unwithdrawn []string
	deadline := time.Now().Add(s.opts.CloseTimeout)
	for {
		s.amu.Lock()
		n := len(s.pending)
		if n == 0 || time.Now().After(deadline) {
			for k, p := range s.pending {
				if p.settled != nil {
					// Answered as not stored, its withdrawal not done:
					// stored after all, it stands (withdraw).
					unwithdrawn = append(unwithdrawn, k)
					continue
				}
				unconfirmed = append(unconfirmed, k)
			}
			s.amu.Unlock()
			break
		}
		s.amu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	s.releaseAll()
	close(s.stop)
	// What is still being tried gives up too: Close has waited its
	// CloseTimeout, and against a server that is down each write or read
	// in flight would take another Timeout.
	s.endLife()
	s.workers.Wait() // retryLoop starts no retry after this
	// Nor does anything else: a durable write still in flight is failed
	// by the publisher's cleanup below, and an abandoned one's withdrawal
	// would start then (goRetry).
	s.rmu.Lock()
	s.retriesDone = true
	s.rmu.Unlock()
	s.retries.Wait()
	s.watcher.Wait()
	// The reply subscriptions of asynchronous acknowledgements belong to
	// the JetStream contexts, on the caller's connection, which stays
	// open: left, every store opened and closed on it left one more, with
	// its goroutine. What is still in flight is unconfirmed, named below.
	s.js.CleanupPublisher()
	s.bulkJS.CleanupPublisher()
	for _, k := range unconfirmed {
		s.log.Error("kvstore: user record not confirmed before close; it may be missing from user.list", "key", k)
	}
	for _, k := range unwithdrawn {
		// Said as missing, it was the opposite of what to do.
		s.log.Error("kvstore: a durable user write answered as not stored was not withdrawn before close; stored after all (user.get finds it), its user is listed and counted though nobody got its creds: revoke it", "key", k)
	}
	if n := len(unconfirmed) + len(unwithdrawn); n > 0 {
		return fmt.Errorf("kvstore: close: %d %w within %s", n, ErrUnconfirmed, s.opts.CloseTimeout)
	}
	return nil
}

// ctx bounds one call to the bucket by Options.Timeout, or the caller's
// deadline when that is sooner. A write whose acknowledgement is lost in a
// stream leader election must not wait out a request's whole deadline
// (25 s, or the two minutes of a change): it fails with ErrUnavailable,
// and the caller, or its client, tries again.
func (s *Store) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.Timeout)
}

// checkOpen fails with ErrClosed, which matches provision.ErrUnavailable.
// The caller holds s.mu.
func (s *Store) checkOpen() error {
	if s.closed {
		return errClosedStore
	}
	return s.lost
}

// open is checkOpen for a caller that does not hold s.mu.
func (s *Store) open() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkOpen()
}

// Broken reports why the store refuses every call until it is opened
// again: its bucket was deleted or replaced under it (lose). It is nil
// while the store serves, and after Close.
func (s *Store) Broken() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lost
}

// foreignWhy is what SealProblem and its ERROR say of a seal key met in
// account records that this instance lacks: the instance cannot tell an
// instance given another seal_key from its own key rotated away too
// early, and each needs the key listed again before a reseal, the first
// also that instance's seal_key changed.
const foreignWhy = "either another instance runs with that key as its seal_key (given another seal key file, or not restarted since a seal_key rotation), or it is a key rotated away and dropped from seal_key_previous before every record was resealed; reads of those accounts fail here, and this instance will not start again on the bucket; list that key in seal_key_previous on every instance and give every instance the same seal_key, restart them one by one, then run provisioner store reseal; the key can go once reseal finds no record sealed with it"

// SealProblem reports the seal keys, by public key, of account records
// this instance read since its start and cannot open: sealed by an
// instance given another seal_key, or with a key rotated away too early,
// which this one holds neither as its seal_key nor as a
// seal_key_previous. Reads of those accounts fail here,
// and a restart of this instance refuses the bucket. It stays until a
// restart: only one with the right keys repairs it. nil while there is
// none; prov.status and the health endpoint show it.
func (s *Store) SealProblem() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if len(s.foreign) == 0 {
		return nil
	}
	return fmt.Errorf("kvstore: the bucket holds accounts sealed with seal key(s) %s, which this instance (seal key %s) holds neither as seal_key nor in seal_key_previous: %s", strings.Join(s.foreign, ", "), s.seal.PublicKey(), foreignWhy)
}

// damageNamed bounds how many keys Damage names; the log names each.
const damageNamed = 10

// namedKeys joins keys for an error, the first damageNamed of them.
func namedKeys(keys []string) string {
	named := strings.Join(keys[:min(len(keys), damageNamed)], ", ")
	if len(keys) > damageNamed {
		named += fmt.Sprintf(" and %d more", len(keys)-damageNamed)
	}
	return named
}

// Damage reports the entries of the bucket whose last value cannot be
// read for another cause than a seal key (SealProblem's): damaged in the
// bucket (an account record that is not one, whose seal does not open or
// that is another key's; a user record, pack or name entry that is not
// one or holds another key's), or written by a newer provisioner. It
// names their keys, never what they hold. Reads of the accounts of
// account records fail on every instance (503), account lists and
// reconcile passes skip them, and a start of any instance refuses the
// bucket; the other entries are skipped, which loses the users or the
// name they hold on the instances started since. It lasts until each is
// put back whole or removed; nil while there is none. Unlike SealProblem,
// it ends once the bucket is repaired: prov.status shows it, and the
// health endpoint says that there is some.
func (s *Store) Damage() error {
	s.mu.RLock()
	keys := slices.Sorted(maps.Keys(s.m.damaged))
	unknownPacks := len(s.m.unknownPacks()) > 0
	s.mu.RUnlock()
	if len(keys) == 0 {
		return nil
	}
	named := namedKeys(keys)
	accounts := 0
	for _, k := range keys {
		if strings.HasPrefix(k, accountPrefix) {
			accounts++
		}
	}
	var until []string
	if accounts > 0 {
		until = append(until, "reads of the accounts of acct. keys fail on every instance, account lists and reconcile passes skip them (counted as unreadable and failed), and any instance that starts refuses the bucket")
	}
	if accounts < len(keys) {
		until = append(until, "the other entries are skipped: an instance that read them whole before keeps what they held, and one started since lacks it (the users of a user. or upack. key; the account of a name. key is not found by its name)")
	}
	if unknownPacks {
		// What the operator sees first: creates of caller-sent keys
		// and revokes of unknown keys failing, on those instances.
		until = append(until, "an instance started since a upack. key was damaged cannot tell which users it held, so it refuses (503) reads, creates with a caller-sent public_key and revokes of any user key it has no record of")
	}
	return fmt.Errorf("kvstore: bucket %q holds %d entries that cannot be read: %s; the log says why for each (written by a newer provisioner: upgrade this instance; damaged: put the entry back whole from a backup of the bucket, or remove the key); until then %s", s.opts.Bucket, len(keys), named, strings.Join(until, "; "))
}

// noteForeign records a seal key met in an account record that this
// instance does not hold, logging it at ERROR the first time.
func (s *Store) noteForeign(key, record string) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if slices.Contains(s.foreign, key) {
		return
	}
	s.foreign = append(s.foreign, key)
	s.log.Error("kvstore: account records are sealed with a seal key this instance does not hold (neither its seal_key nor in seal_key_previous): "+foreignWhy, "foreign_seal_key", key, "seal_key", s.seal.PublicKey(), "key", record)
}

// lose makes every later call fail with a refusal naming what happened to
// the bucket: the mirror holds what no bucket holds any more, and its
// revisions are not the new stream's, so reads would show accounts that
// are gone and writes would go to a bucket the mirror does not follow. A
// restart serves what the bucket holds then.
func (s *Store) lose(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost != nil || s.closed {
		return
	}
	s.lost = fmt.Errorf("%w: %w: kvstore: bucket %q was %s under this instance; it answers nothing more: restart it to serve what the bucket holds now", provision.ErrUnavailable, provision.ErrBroken, s.opts.Bucket, what)
	s.log.Error("kvstore: the bucket was "+what+" under this instance; every request is refused until it restarts", "bucket", s.opts.Bucket)
	// The watcher ends now rather than at its next update, which may be
	// the new bucket's.
	select {
	case s.restartWatch <- struct{}{}:
	default:
	}
}

var errClosedStore = fmt.Errorf("%w: %w", ErrClosed, provision.ErrUnavailable)

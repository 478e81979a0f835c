// Package bench measures the provisioner against its floors: the same work
// done without the service, or with only the work the service cannot
// avoid, on the same server in the same run, interleaved in rounds so that
// machine noise hits both alike.
//
// It writes a deployment with bootstrap.Init (the file store or the
// JetStream KV store, each in its durable settings), runs the nats-server
// embedded in this process or as a separate process from the real binary,
// and starts the service in this process. See Run for what is measured.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
)

// Stores the bench can run the service on.
const (
	StoreFile      = bootstrap.StoreFile
	StoreJetStream = bootstrap.StoreJetStream
)

// Defaults of Options.
const (
	DefaultN           = 2000
	DefaultC           = 8
	DefaultCHigh       = 32
	DefaultRounds      = 5
	DefaultVersions    = 3
	DefaultRevocations = 1000
)

// Targets, as the issues set them.
const (
	// TargetCreate is the least share of the floor's rate account.create
	// must reach, at both concurrencies and on both stores.
	TargetCreate = 0.8
	// TargetUser is the same for user.create against the floor endpoint
	// that issues a user and nothing else.
	TargetUser = 0.8
	// ScaleLimit bounds how much more an operation may cost at the large
	// size than at 1,000 accounts.
	ScaleLimit = 1.3
	// RSSLimit bounds the resident memory at the large size.
	RSSLimit = 200 << 20
)

// ErrOptions reports options that cannot be measured.
var ErrOptions = errors.New("bench: bad options")

// Options set what is measured.
type Options struct {
	// N is the number of operations per measurement, split into Rounds
	// interleaved rounds; C the concurrent requesters, and CHigh the
	// second concurrency at which account.create and revokes on one
	// account are measured too (0: DefaultCHigh; equal to C: not twice).
	N, C, CHigh int
	Rounds      int
	// Versions is how many versions of one account each round of a
	// one-account measurement waits for. The service makes at most one
	// version of an account per second, so these measurements take about
	// Versions seconds per round whatever N is.
	Versions int
	// Revocations is how many revocations the account of the second
	// revoke+update measurement holds before it starts.
	Revocations int
	// Accounts turns on the scale mode: costs at 1,000 and at Accounts
	// accounts, one reconcile pass at Accounts, and the memory then.
	Accounts int
	// Store is StoreFile (the default) or StoreJetStream.
	Store string
	// ServerBinary, when set, is the nats-server binary to run as a
	// separate process; otherwise the server runs embedded.
	ServerBinary string
	// Cluster runs ServerBinary as a cluster of three processes, the
	// deployment of several instances: the JetStream store's bucket gets
	// three replicas, and the servers keep the default sync interval, as
	// init's cluster configs do.
	Cluster bool
	// Progress, when set, is told what a long step (the scale mode's
	// fills, minutes at 100,000 accounts) is about to do.
	Progress func(msg string)
	// Only, when set, measures only the operations whose names it
	// matches (and whose floors it matches, for a ratio), to profile
	// them alone.
	Only *regexp.Regexp
	// Dir is where the deployment lives; default a new temp dir.
	Dir string
	// Logger receives the service's log. Default: errors to stderr (the
	// floors' accounts are orphans to the reconciler, and it warns about
	// each one).
	Logger *slog.Logger
}

// Check reports what Start would refuse in the options, before anything
// is made: for a caller that must refuse bad options before it changes
// anything itself (the CLI's --cpuprofile file).
func (o Options) Check() error { return o.setDefaults() }

// setDefaults fills what was left zero and checks the rest.
func (o *Options) setDefaults() error {
	if o.N == 0 {
		o.N = DefaultN
	}
	if o.C == 0 {
		o.C = DefaultC
	}
	if o.CHigh == 0 {
		o.CHigh = DefaultCHigh
	}
	if o.Rounds == 0 {
		o.Rounds = DefaultRounds
	}
	if o.Versions == 0 {
		o.Versions = DefaultVersions
	}
	if o.Revocations == 0 {
		o.Revocations = DefaultRevocations
	}
	if o.Store == "" {
		o.Store = StoreFile
	}
	switch {
	case o.N < 0 || o.C < 0 || o.CHigh < 0 || o.Rounds < 0 || o.Versions < 0 || o.Revocations < 0 || o.Accounts < 0:
		return fmt.Errorf("%w: -n, -c, --c-high, --rounds, --versions, --revocations and --accounts must be positive", ErrOptions)
	case o.Store != StoreFile && o.Store != StoreJetStream:
		return fmt.Errorf("%w: store %q: want %s or %s", ErrOptions, o.Store, StoreFile, StoreJetStream)
	case o.Cluster && (o.ServerBinary == "" || o.Store != StoreJetStream):
		return fmt.Errorf("%w: a cluster runs the nats-server binary three times for the JetStream store's R3 bucket: it needs a server binary and store %s", ErrOptions, StoreJetStream)
	case o.Accounts > 0 && o.Accounts <= scaleSmall:
		return fmt.Errorf("%w: --accounts must be above %d", ErrOptions, scaleSmall)
	}
	return nil
}

// Result is one measured operation.
type Result struct {
	Name      string        `json:"name"`
	C         int           `json:"c"`
	Ops       int           `json:"ops"`
	Errors    int           `json:"errors"`
	PerSecond float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	// CPUPerOp is the CPU time this process spent per operation (the
	// service, the floors, the bench's clients, and the server when it is
	// embedded); ServerCPUPerOp that of the separate nats-server process.
	CPUPerOp       time.Duration `json:"cpu_per_op_ns,omitempty"`
	ServerCPUPerOp time.Duration `json:"server_cpu_per_op_ns,omitempty"`
	// Floor names the result this one is compared with, and Ratio is this
	// rate over the floor's. Target and Pass are set where a target holds.
	Floor  string  `json:"floor,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
	Target float64 `json:"target,omitempty"`
	Pass   *bool   `json:"pass,omitempty"`
	// Versions is how many distinct account JWTs the operations made
	// (measurements on one account).
	Versions int `json:"versions,omitempty"`
	// JWTBytes is the size of the largest account JWT the operations
	// pushed (revoke+update and its floor).
	JWTBytes int `json:"jwt_bytes,omitempty"`
}

// ScaleResult is the per-operation cost of one operation at two sizes.
type ScaleResult struct {
	Name   string        `json:"name"`
	Small  time.Duration `json:"cost_small_ns"`
	Large  time.Duration `json:"cost_large_ns"`
	Ratio  float64       `json:"ratio"`
	Limit  float64       `json:"limit,omitempty"`
	Pass   *bool         `json:"pass,omitempty"`
	Growth string        `json:"growth,omitempty"`
}

// ReconcileResult is one reconcile pass at the large size: the service's
// own summary of it, and whether everything was in line (nothing pushed,
// nothing failed, no orphans).
type ReconcileResult struct {
	Reply api.ReconcileReply `json:"reply"`
	// Elapsed is the pass as the bench timed it.
	Elapsed time.Duration `json:"elapsed_ns"`
	// RequestTimeout is the service's request_timeout: a prov.reconcile
	// request whose pass takes longer is answered that it is running.
	RequestTimeout time.Duration `json:"request_timeout_ns"`
	InLine         *bool         `json:"in_line"`
	// Live is how many live accounts the store held; the reply's
	// accounts count the tombstones too.
	Live int `json:"live_accounts"`
}

// Report is the outcome of a run.
type Report struct {
	Machine string `json:"machine"`
	// Store is the service's store; Server the nats-server it ran
	// against, External whether that was a separate process, and Servers
	// how many (three for a cluster).
	Store    string   `json:"store"`
	Server   string   `json:"server"`
	External bool     `json:"external"`
	Servers  int      `json:"servers"`
	N        int      `json:"n"`
	C        int      `json:"c"`
	CHigh    int      `json:"c_high"`
	Rounds   int      `json:"rounds"`
	Results  []Result `json:"results"`
	// LoadStart and LoadEnd are the machine's load averages (1, 5, 15
	// minutes) when the measurements began and ended.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
	// Storage names the memory-backed filesystem (tmpfs, ramfs) the
	// deployment's directory is on, when it is: the file store's
	// fdatasync and the servers' sync_interval always reach no disk
	// there and cost nothing, so the run does not measure the durable
	// settings the targets are set for (a temp dir where /tmp is tmpfs;
	// give --dir on a disk).
	Storage string `json:"storage,omitempty"`
	// Elapsed is the time the measurements in Results took, setup
	// included.
	Elapsed   time.Duration    `json:"elapsed_ns"`
	SmallSize int              `json:"scale_small,omitempty"`
	LargeSize int              `json:"scale_large,omitempty"`
	Scale     []ScaleResult    `json:"scale,omitempty"`
	Reconcile *ReconcileResult `json:"reconcile,omitempty"`
	RSSBytes  uint64           `json:"rss_bytes,omitempty"`
	HeapBytes uint64           `json:"heap_bytes,omitempty"`
	// ServerRSS is the separate servers' resident memory, a cluster's three
	// processes together.
	ServerRSS    uint64        `json:"server_rss_bytes,omitempty"`
	RSSLimit     uint64        `json:"rss_limit_bytes,omitempty"`
	RSSPass      *bool         `json:"rss_pass,omitempty"`
	ScaleElapsed time.Duration `json:"scale_fill_ns,omitempty"`
}

// sample is what one batch of operations measured.
type sample struct {
	lat       []time.Duration
	elapsed   time.Duration
	errors    int
	firstErr  error
	cpu       time.Duration // this process
	serverCPU time.Duration // the separate server process
}

func (s *sample) add(o sample) {
	s.lat = append(s.lat, o.lat...)
	s.elapsed += o.elapsed
	s.errors += o.errors
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
	s.cpu += o.cpu
	s.serverCPU += o.serverCPU
}

// run does n operations with c workers; op gets the operation's index.
// Once ctx ends (Ctrl-C), the workers start no more operations, and the
// sample fails with ctx's error: the rows and the scale mode's fills of
// thousands of accounts otherwise ran on to the end.
func run(ctx context.Context, n, c int, op func(i int) error) sample {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if ctx.Err() != nil {
					return
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	s := sample{lat: lat, elapsed: time.Since(start), errors: int(errs.Load())}
	if p := firstErr.Load(); p != nil {
		s.firstErr = *p
	} else if int(next.Load()) < n {
		s.firstErr = ctx.Err() // stopped before every operation ran
	}
	return s
}

// measure is run with the CPU time each process spent meanwhile, and
// until the work the operations left running is done (settle): the
// service writes user records and audit events after its replies (400
// user.creates on the KV store left about 40 ms of CPU behind them, half
// their own), and the key pools refill once a row stops taking keys.
// Measured up to the last reply only, that work fell into the next row,
// often a floor or the JetStream write floor: the service's CPU per
// operation read low, theirs high, and the next row ran slower than alone.
//
// It waits for quiet before the row too, unmeasured: what ran before it
// and is not a row's (the setup's 1,000 revocations, whose records and
// audit events were still being written as the first row, a floor,
// started; the floors' deletes between rounds) is not counted in it.
func (e *Env) measure(ctx context.Context, n, c int, op func(i int) error) sample {
	e.settle()
	self0, srv0 := e.cpu()
	s := run(ctx, n, c, op)
	e.settle()
	self1, srv1 := e.cpu()
	s.cpu, s.serverCPU = self1-self0, srv1-srv0
	return s
}

// settle takes the work as done once the processes used at most
// settleQuiet of CPU in each of settleQuietPolls polls settlePoll apart
// (the servers' CPU counts in 10 ms ticks: one tick in a poll is not
// quiet). settleMax bounds the wait.
const (
	settlePoll       = 10 * time.Millisecond
	settleQuiet      = time.Millisecond
	settleQuietPolls = 3
	settleMax        = 5 * time.Second
)

// settle waits until this process and the servers are quiet, at most
// settleMax.
func (e *Env) settle() {
	self, srv := e.cpu()
	quiet := 0
	for deadline := time.Now().Add(settleMax); quiet < settleQuietPolls && time.Now().Before(deadline); {
		time.Sleep(settlePoll)
		self1, srv1 := e.cpu()
		if self1-self+srv1-srv <= settleQuiet {
			quiet++
		} else {
			quiet = 0
		}
		self, srv = self1, srv1
	}
}

func (s sample) result(name string, c int) Result {
	slices.Sort(s.lat)
	r := Result{Name: name, C: c, Ops: len(s.lat), Errors: s.errors}
	if s.elapsed > 0 {
		r.PerSecond = float64(len(s.lat)) / s.elapsed.Seconds()
	}
	if n := len(s.lat); n > 0 {
		r.P50 = s.lat[n/2]
		r.P99 = s.lat[min(n-1, n*99/100)]
		r.CPUPerOp = s.cpu / time.Duration(n)
		r.ServerCPUPerOp = s.serverCPU / time.Duration(n)
	}
	return r
}

// request sends a provisioning request and fails on an error reply.
func request(nc *nats.Conn, subject string, body []byte) ([]byte, error) {
	m, err := nc.Request(subject, body, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subject, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, fmt.Errorf("%s: %s %s", subject, code, m.Header.Get(micro.ErrorHeader))
	}
	return m.Data, nil
}

// userKey returns a new random user public key. It is only ever revoked,
// so no key pair is needed: the random bytes stand for the Ed25519 public
// key, and the bench spends no key generation on them.
func userKey() string {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	pub, err := nkeys.Encode(nkeys.PrefixByteUser, raw[:])
	if err != nil {
		panic(err)
	}
	return string(pub)
}

// tokens collects the distinct account JWTs a measurement made, by their
// signatures, and the size of the largest.
type tokens struct {
	mu      sync.Mutex
	seen    map[string]bool
	largest int
}

func (t *tokens) add(token string) {
	sig := token
	if i := len(token) - 86; i > 0 { // an Ed25519 signature is 86 base64 characters
		sig = token[i:]
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	t.seen[sig] = true
	t.largest = max(t.largest, len(token))
}

func (t *tokens) count() (versions, largest int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen), t.largest
}

// row is one measured operation: what each round runs, and what it
// measured so far.
type row struct {
	name string
	c    int
	// ops is the number of operations per round.
	ops int
	op  func(round, i int) error
	// before prepares a round, unmeasured.
	before func(round int) error
	s      sample
	// floor is the row this one is compared with; target, when above 0,
	// the least ratio to it.
	floor  *row
	target float64
	// made collects the JWTs of one-account rows.
	made *tokens
	// jwtBytes reports the size of a floor's JWT.
	jwtBytes func() int
}

// Run measures everything Options asks for, in rounds: each round runs
// every operation once, in this order, so that each service measurement
// comes right after its floor:
//
//   - account.create at C and at CHigh, each after its floor: fresh keys
//     (from a pool, as the service takes them), signed by the operator
//     signing key, pushed on $SYS.REQ.CLAIMS.UPDATE from another
//     connection, waiting for the server's 200; nothing stored;
//   - user.create at C after its floor: a micro endpoint on the service's
//     own connection that takes a pooled key, signs a user JWT with an
//     account signing key and formats the creds, as the service does, and
//     nothing else (no store, no lookup, no event);
//   - user.revoke on one account at C and at CHigh, counting the versions
//     (distinct JWTs) the service made;
//   - revoke+update on one account with no revocations, and on one filled
//     with Revocations first, each after a floor that signs and pushes a
//     JWT of the same size (the service's account's claims at the start of
//     the round, under another key);
//
// then account.delete of every account the service created. With Accounts
// set, scale measures the cost per operation at 1,000 and Accounts
// accounts and one reconcile pass.
func Run(ctx context.Context, e *Env, o Options) (*Report, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Machine: Machine(), Store: e.Store, Server: e.ServerDescription(), External: e.External != nil, Servers: 1 + len(e.Peers), Storage: e.Storage,
		N: o.N, C: o.C, CHigh: o.CHigh, Rounds: o.Rounds, LoadStart: loadAverage()}
	prefix := e.Prefix
	create := func(body string) (api.AccountReply, error) {
		var r api.AccountReply
		data, err := request(e.Admin, prefix+".account.create", []byte(body))
		if err == nil {
			err = json.Unmarshal(data, &r)
		}
		return r, err
	}

	// A few accounts carry the users, so that user.create does not
	// serialize on one account more than a tenant would.
	const userAccounts = 8

	per := max(1, o.N/o.Rounds)
	// One-account rows wait for o.Versions versions per round.
	oneN := func(c int) int { return max(c, min(per, c*o.Versions)) }
	cs := []int{o.C}
	if o.CHigh != o.C {
		cs = append(cs, o.CHigh)
	}
	// A row of fewer operations a round than requesters runs at one
	// requester per operation, and is named at that concurrency: a small
	// -n labelled account.create "c=32" and the write floor's few
	// batches "c=8" where they ran at fewer. One-account rows make at
	// least c operations.
	at := func(c, ops int) int { return min(c, ops) }
	createCs := []int{at(o.C, per)}
	if c := at(o.CHigh, per); c != createCs[0] {
		createCs = append(createCs, c)
	}

	var rows []*row
	var mu sync.Mutex
	var created []string
	for _, c := range createCs {
		floor := &row{name: fmt.Sprintf("account.create floor (keys, sign, push, 200) c=%d", c), c: c, ops: per,
			op: func(round, i int) error { return e.floorCreate(fmt.Sprintf("floor-c%d-%d-%d", c, round, i)) }}
		svc := &row{name: fmt.Sprintf("account.create via service c=%d", c), c: c, ops: per, floor: floor, target: TargetCreate,
			op: func(round, i int) error {
				r, err := create(fmt.Sprintf(`{"name":"svc-c%d-%d-%d"}`, c, round, i))
				if err != nil {
					return err
				}
				mu.Lock()
				created = append(created, r.Account.PublicKey)
				mu.Unlock()
				return nil
			}}
		rows = append(rows, floor, svc)
	}
	userBody := func(round, i int) []byte {
		return fmt.Appendf(nil, `{"account":"bench-users-%d","name":"u-%d-%d"}`, i%userAccounts, round, i)
	}
	userC := at(o.C, per)
	userFloor := &row{name: fmt.Sprintf("user.create floor (pooled key, sign, creds; service's connection) c=%d", userC), c: userC, ops: per,
		op: func(round, i int) error {
			_, err := request(e.Admin, prefix+floorUserSubject, userBody(round, i))
			return err
		}}
	rows = append(rows, userFloor, &row{name: fmt.Sprintf("user.create via service c=%d", userC), c: userC, ops: per, floor: userFloor, target: TargetUser,
		op: func(round, i int) error {
			_, err := request(e.Admin, prefix+".user.create", userBody(round, i))
			return err
		}})

	var wf *writeFloor
	var writeRows []*row
	if e.Store == StoreJetStream {
		replicas := e.replicas()
		opCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }
		batches := max(1, per/writeBatchSize)
		writeRows = []*row{
			{name: fmt.Sprintf("JetStream write floor: one %d B write, acknowledged (R%d) c=%d", writeSize, replicas, at(o.C, per)), c: at(o.C, per), ops: per,
				op: func(int, int) error {
					c, cancel := opCtx()
					defer cancel()
					return wf.write(c)
				}},
			{name: fmt.Sprintf("JetStream write floor: atomic batch of %d such writes (R%d) c=%d", writeBatchSize, replicas, at(o.C, batches)), c: at(o.C, batches), ops: batches,
				op: func(int, int) error {
					c, cancel := opCtx()
					defer cancel()
					return wf.batch(c)
				}},
		}
		rows = append(rows, writeRows...)
		defer func() {
			if wf != nil {
				wf.stop(context.WithoutCancel(ctx), e)
			}
		}()
	}

	revoke := func(acct string, made *tokens) error {
		data, err := request(e.Admin, prefix+".user.revoke", fmt.Appendf(nil, `{"account":%q,"user":%q}`, acct, userKey()))
		if err != nil {
			return err
		}
		var r api.RevokeUserReply
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		made.add(r.Account.JWT)
		return nil
	}
	for _, c := range cs {
		made := &tokens{}
		rows = append(rows, &row{name: fmt.Sprintf("user.revoke via service, one account c=%d", c), c: c, ops: oneN(c), made: made,
			op: func(int, int) error { return revoke("bench-revoke", made) }})
	}
	for _, acct := range []struct{ name, label string }{
		{"bench-change", "from 0 revocations"},
		{"bench-revoked", fmt.Sprintf("from %d revocations", o.Revocations)},
	} {
		f, err := e.newChangeFloor(ctx)
		if err != nil {
			return nil, err
		}
		floor := &row{name: fmt.Sprintf("revoke+update floor (sign, push same size), %s c=%d", acct.label, at(o.C, per)), c: at(o.C, per), ops: per,
			before: func(int) error { return f.copyFrom(e, acct.name) },
			op:     func(_, i int) error { return f.push(e, i) }, jwtBytes: f.size}
		made := &tokens{}
		rows = append(rows, floor, &row{name: fmt.Sprintf("revoke+update via service, one account, %s c=%d", acct.label, o.C), c: o.C, ops: oneN(o.C), floor: floor, made: made,
			op: func(_, i int) error {
				if i%2 == 0 {
					return revoke(acct.name, made)
				}
				data, err := request(e.Admin, prefix+".account.update", fmt.Appendf(nil, `{"account":%q,"limits":{"conn":%d}}`, acct.name, 1000+i))
				if err != nil {
					return err
				}
				var r api.AccountReply
				if err := json.Unmarshal(data, &r); err != nil {
					return err
				}
				made.add(r.Account.JWT)
				return nil
			}})
	}

	if o.Only != nil {
		rows = slices.DeleteFunc(rows, func(r *row) bool { return !o.Only.MatchString(r.name) })
		for _, r := range rows {
			if r.floor != nil && !slices.Contains(rows, r.floor) {
				r.floor = nil
			}
		}
	}
	if len(rows) == 0 && o.Accounts == 0 {
		// Refused before the set-up (1,000 revocations): a run that
		// measured nothing printed an empty table, a pass for --strict.
		return nil, fmt.Errorf("%w: --only %q matches no operation (account.delete deletes what account.create via service made, and comes only with it)", ErrOptions, o.Only)
	}
	// The accounts the rows work on, made once the rows are known.
	for i := range userAccounts {
		if _, err := create(fmt.Sprintf(`{"name":"bench-users-%d"}`, i)); err != nil {
			return nil, err
		}
	}
	oneAccount := map[string]string{} // name -> public key
	for _, name := range []string{"bench-revoke", "bench-change", "bench-revoked"} {
		r, err := create(fmt.Sprintf(`{"name":%q}`, name))
		if err != nil {
			return nil, err
		}
		oneAccount[name] = r.Account.PublicKey
	}
	if err := e.fillRevocations(ctx, oneAccount["bench-revoked"], o.Revocations); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(rows, func(r *row) bool { return slices.Contains(writeRows, r) }) {
		var err error
		if wf, err = e.startWriteFloor(ctx, e.replicas()); err != nil {
			return nil, err
		}
	}
	for round := range o.Rounds {
		for _, r := range rows {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if r.before != nil {
				if err := r.before(round); err != nil {
					return nil, err
				}
			}
			r.s.add(e.measure(ctx, r.ops, r.c, func(i int) error { return r.op(round, i) }))
			if err := ctx.Err(); err != nil {
				return nil, err // interrupted: not "operations failed"
			}
			if r.s.firstErr != nil {
				return nil, fmt.Errorf("bench: %s: %d operations failed, first: %w", r.name, r.s.errors, r.s.firstErr)
			}
		}
		// The floors' accounts go before the next round: to the service's
		// reconciler they are orphans, and the server's account count
		// should grow with the service's accounts alone.
		if err := e.deleteFloorAccounts(ctx); err != nil {
			return nil, err
		}
	}
	// Fewer accounts than requesters (a small -n, or --only) are
	// deleted at one requester each: the row names that concurrency, not
	// -c, which it did not run at.
	delC := min(o.C, max(1, len(created)))
	delName := fmt.Sprintf("account.delete via service c=%d", delC)
	if o.Only != nil && !o.Only.MatchString(delName) {
		created = nil // left in place: measure only what was asked
	}
	del := e.measure(ctx, len(created), delC, func(i int) error {
		_, err := request(e.Admin, prefix+".account.delete", fmt.Appendf(nil, `{"account":%q}`, created[i]))
		return err
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if del.firstErr != nil {
		return nil, fmt.Errorf("bench: account.delete: %d operations failed, first: %w", del.errors, del.firstErr)
	}
	if err := e.deleteChangeFloors(ctx); err != nil {
		return nil, err
	}
	// The write floor's account goes too before the scale mode: its
	// reconcile pass took it, still on the servers, for an orphan, and
	// failed the run's "in line" on the bench's own account.
	if wf != nil {
		err := wf.stop(ctx, e)
		wf = nil
		if err != nil {
			return nil, fmt.Errorf("bench: remove the JetStream write floor: %w", err)
		}
	}

	for _, r := range rows {
		res := r.s.result(r.name, r.c)
		if r.floor != nil {
			res.Floor = r.floor.name
			res.Ratio = ratio(res.PerSecond, r.floor.s.result("", 0).PerSecond)
			if r.target > 0 {
				res.Target, res.Pass = r.target, pass(res.Ratio >= r.target)
			}
		}
		if r.made != nil {
			res.Versions, res.JWTBytes = r.made.count()
		}
		if r.jwtBytes != nil {
			res.JWTBytes = r.jwtBytes()
		}
		rep.Results = append(rep.Results, res)
	}
	if len(created) > 0 {
		rep.Results = append(rep.Results, del.result(delName, delC))
	}
	rep.Elapsed, rep.LoadEnd = time.Since(start), loadAverage()
	if o.Accounts > 0 {
		if err := scale(ctx, e, o, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// fillRevocations revokes n random user keys of one account directly
// through the domain (provision.Service.RevokeUser), all at once: the
// service combines them into a few versions.
func (e *Env) fillRevocations(ctx context.Context, acct string, n int) error {
	sem := make(chan struct{}, 256)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := e.Service.Provision.RevokeUser(ctx, api.RevokeUserRequest{Account: acct, User: userKey()}); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return fmt.Errorf("bench: fill %s with %d revocations: %w", acct, n, err)
	default:
		return nil
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func pass(b bool) *bool { return &b }

// decodeAccount decodes an account JWT.
func decodeAccount(token string) (*jwt.AccountClaims, error) {
	c, err := jwt.DecodeAccountClaims(token)
	if err != nil {
		return nil, fmt.Errorf("bench: decode account JWT: %w", err)
	}
	return c, nil
}

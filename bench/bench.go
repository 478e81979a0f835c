// Package bench measures the provisioner against the floor: the same work
// done directly against the nats-server, without the service, in the same
// run, interleaved, so that machine noise hits both alike.
//
// It runs on an embedded nats-server in operator mode with a full resolver
// (or against a running deployment) with the responder in-process.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
	"github.com/natsprov/provisioner/keypair"
	"github.com/natsprov/provisioner/natsembed"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/service"
)

// Options set what is measured.
type Options struct {
	// N is the number of operations per measurement, C the concurrent
	// requesters.
	N, C int
	// Rounds splits each measurement into interleaved rounds.
	Rounds int
	// Accounts turns on the scale mode: costs at 1,000 and at Accounts
	// accounts.
	Accounts int
	// Dir is where the embedded deployment lives; default a temp dir.
	Dir string
	// Logger receives the service's log. Default: warnings to stderr.
	Logger *slog.Logger
}

// Result is one measured operation.
type Result struct {
	Name      string        `json:"name"`
	Ops       int           `json:"ops"`
	Errors    int           `json:"errors"`
	PerSecond float64       `json:"ops_per_sec"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	// Floor names the result this one is compared with, and Ratio is this
	// rate over the floor's.
	Floor  string  `json:"floor,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
	Target float64 `json:"target,omitempty"`
	Pass   *bool   `json:"pass,omitempty"`
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

// Report is the outcome of a run.
type Report struct {
	Machine      string        `json:"machine"`
	N            int           `json:"n"`
	C            int           `json:"c"`
	Results      []Result      `json:"results"`
	SmallSize    int           `json:"scale_small,omitempty"`
	LargeSize    int           `json:"scale_large,omitempty"`
	Scale        []ScaleResult `json:"scale,omitempty"`
	RSSBytes     uint64        `json:"rss_bytes,omitempty"`
	HeapBytes    uint64        `json:"heap_bytes,omitempty"`
	RSSLimit     uint64        `json:"rss_limit_bytes,omitempty"`
	RSSPass      *bool         `json:"rss_pass,omitempty"`
	ScaleElapsed time.Duration `json:"scale_fill_ns,omitempty"`
}

// Env is the deployment a bench runs against.
type Env struct {
	Dir      string
	Server   *natsembed.Server
	Service  *service.Service
	Admin    *nats.Conn // sends provisioning requests
	Sys      *nats.Conn // the provisioner user's creds, for the floor
	Operator *provision.Operator
	noop     micro.Service
}

// Start writes a deployment, starts the embedded server and the service,
// and registers the do-nothing micro endpoint of the round-trip floor on
// the service's own connection.
func Start(ctx context.Context, o Options) (*Env, error) {
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "provisioner-bench-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	limit := max(o.Accounts, o.N*o.Rounds) + 2*o.N + 1000
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir, ResolverLimit: limit, Store: bootstrap.StoreFile})
	if err != nil {
		return nil, err
	}
	srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: -1})
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Server: srv}
	cfg, err := config.Load(res.Config)
	if err != nil {
		e.Stop()
		return nil, err
	}
	cfg.NATSURL = srv.URL()
	cfg.LogLevel = "warn"
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if e.Service, err = service.Start(ctx, cfg, log); err != nil {
		e.Stop()
		return nil, err
	}
	e.Operator = e.Service.Operator
	if e.Admin, err = nats.Connect(srv.URL(), nats.UserCredentials(res.AdminCreds), nats.CustomInboxPrefix(bootstrap.AdminInboxPrefix)); err != nil {
		e.Stop()
		return nil, err
	}
	if e.Sys, err = nats.Connect(srv.URL(), nats.UserCredentials(res.ProvisionerCreds), nats.CustomInboxPrefix(bootstrap.ProvisionerInboxPrefix)); err != nil {
		e.Stop()
		return nil, err
	}
	e.noop, err = micro.AddService(e.Service.NC, micro.Config{Name: "bench_floor", Version: "0.0.1"})
	if err == nil {
		err = e.noop.AddEndpoint("noop", micro.HandlerFunc(func(r micro.Request) { r.Respond(nil) }), micro.WithEndpointSubject(cfg.SubjectPrefix+".bench.noop"))
	}
	if err == nil {
		err = e.Service.NC.Flush()
	}
	if err != nil {
		e.Stop()
		return nil, fmt.Errorf("bench: floor endpoint: %w", err)
	}
	return e, nil
}

// Stop stops everything Start started.
func (e *Env) Stop() {
	if e.noop != nil {
		e.noop.Stop()
	}
	for _, nc := range []*nats.Conn{e.Admin, e.Sys} {
		if nc != nil {
			nc.Close()
		}
	}
	if e.Service != nil {
		e.Service.Stop()
	}
	if e.Server != nil {
		e.Server.Stop()
	}
}

// sample is what one batch of operations measured.
type sample struct {
	lat      []time.Duration
	elapsed  time.Duration
	errors   int
	firstErr error
}

func (s *sample) add(o sample) {
	s.lat = append(s.lat, o.lat...)
	s.elapsed += o.elapsed
	s.errors += o.errors
	if s.firstErr == nil {
		s.firstErr = o.firstErr
	}
}

// run does n operations with c workers; op gets the operation's index.
func run(n, c int, op func(i int) error) sample {
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
	}
	return s
}

func (s sample) result(name string) Result {
	slices.Sort(s.lat)
	r := Result{Name: name, Ops: len(s.lat), Errors: s.errors}
	if s.elapsed > 0 {
		r.PerSecond = float64(len(s.lat)) / s.elapsed.Seconds()
	}
	if len(s.lat) > 0 {
		r.P50 = s.lat[len(s.lat)/2]
		r.P99 = s.lat[min(len(s.lat)-1, len(s.lat)*99/100)]
	}
	return r
}

// request sends a provisioning request and fails on an error reply.
func request(nc *nats.Conn, subject string, body []byte) ([]byte, error) {
	m, err := nc.Request(subject, body, 30*time.Second)
	if err != nil {
		return nil, err
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		return nil, fmt.Errorf("%s: %s %s", subject, code, m.Header.Get(micro.ErrorHeader))
	}
	return m.Data, nil
}

// floorCreate is account.create without the service: fresh keys, sign with
// the operator signing key, push, wait for the server's 200. It stores
// nothing. It makes keys as cheaply as the service does.
func (e *Env) floorCreate(name string) error {
	ident, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		return err
	}
	signer, err := keypair.Create(nkeys.PrefixByteAccount)
	if err != nil {
		return err
	}
	pub, _ := ident.PublicKey()
	spub, _ := signer.PublicKey()
	c := jwt.NewAccountClaims(pub)
	c.Name = name
	c.SigningKeys.Add(spub)
	token, err := c.Encode(e.Operator.Signer)
	if err != nil {
		return err
	}
	m, err := e.Sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(token), 30*time.Second)
	if err != nil {
		return err
	}
	var rep struct {
		Data *struct {
			Code int `json:"code"`
		} `json:"data"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return err
	}
	if rep.Error != nil || rep.Data == nil || rep.Data.Code != 200 {
		return fmt.Errorf("floor push refused: %s", m.Data)
	}
	return nil
}

// Run measures everything Options asks for and returns the report.
func Run(ctx context.Context, e *Env, o Options) (*Report, error) {
	if o.N <= 0 || o.C <= 0 {
		return nil, errors.New("bench: -n and -c must be positive")
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	prefix := "prov"
	rep := &Report{Machine: Machine(), N: o.N, C: o.C}

	// A few accounts carry the users, so that user.create does not
	// serialize on one account's lock more than a tenant would.
	const userAccounts = 8
	for i := range userAccounts {
		if _, err := request(e.Admin, prefix+".account.create", fmt.Appendf(nil, `{"name":"bench-users-%d"}`, i)); err != nil {
			return nil, err
		}
	}
	if _, err := request(e.Admin, prefix+".account.create", []byte(`{"name":"bench-hot"}`)); err != nil {
		return nil, err
	}

	per := max(1, o.N/o.Rounds)
	var floorCreate, svcCreate, floorRTT, svcUser, svcChange sample
	var created []string
	var mu sync.Mutex
	seq := 0
	for round := range o.Rounds {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base := seq
		seq += per
		floorCreate.add(run(per, o.C, func(i int) error {
			return e.floorCreate(fmt.Sprintf("floor-%d", base+i))
		}))
		svcCreate.add(run(per, o.C, func(i int) error {
			data, err := request(e.Admin, prefix+".account.create", fmt.Appendf(nil, `{"name":"svc-%d"}`, base+i))
			if err != nil {
				return err
			}
			var r struct {
				Account struct {
					PublicKey string `json:"public_key"`
				} `json:"account"`
			}
			if err := json.Unmarshal(data, &r); err != nil {
				return err
			}
			mu.Lock()
			created = append(created, r.Account.PublicKey)
			mu.Unlock()
			return nil
		}))
		floorRTT.add(run(per, o.C, func(int) error {
			_, err := request(e.Admin, prefix+".bench.noop", nil)
			return err
		}))
		svcUser.add(run(per, o.C, func(i int) error {
			_, err := request(e.Admin, prefix+".user.create",
				fmt.Appendf(nil, `{"account":"bench-users-%d","name":"u-%d-%d"}`, i%userAccounts, round, i))
			return err
		}))
		svcChange.add(run(per, o.C, func(i int) error {
			if i%2 == 0 {
				kp, _ := nkeys.CreateUser()
				pub, _ := kp.PublicKey()
				_, err := request(e.Admin, prefix+".user.revoke", fmt.Appendf(nil, `{"account":"bench-hot","user":%q}`, pub))
				return err
			}
			_, err := request(e.Admin, prefix+".account.update", fmt.Appendf(nil, `{"account":"bench-hot","limits":{"conn":%d}}`, 1000+i))
			return err
		}))
	}
	svcDelete := run(len(created), o.C, func(i int) error {
		_, err := request(e.Admin, prefix+".account.delete", fmt.Appendf(nil, `{"account":%q}`, created[i]))
		return err
	})

	fc := floorCreate.result("account.create floor (keys, sign, push, 200)")
	sc := svcCreate.result("account.create via service")
	fr := floorRTT.result("user.create floor (empty micro round trip)")
	su := svcUser.result("user.create via service")
	sc.Floor, sc.Ratio, sc.Target = fc.Name, ratio(sc.PerSecond, fc.PerSecond), 0.8
	su.Floor, su.Ratio, su.Target = fr.Name, ratio(su.PerSecond, fr.PerSecond), 0.5
	sc.Pass, su.Pass = pass(sc.Ratio >= sc.Target), pass(su.Ratio >= su.Target)
	rep.Results = []Result{fc, sc, fr, su,
		svcChange.result("revoke+update via service (one account)"),
		svcDelete.result("account.delete via service"),
	}
	for _, r := range []sample{floorCreate, svcCreate, floorRTT, svcUser, svcChange, svcDelete} {
		if r.firstErr != nil {
			return rep, fmt.Errorf("bench: %d operations failed, first: %w", r.errors, r.firstErr)
		}
	}
	if o.Accounts > 0 {
		if err := scale(ctx, e, o, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func pass(b bool) *bool { return &b }

// scale fills the store to 1,000 and then to o.Accounts accounts and
// measures each operation's cost at both sizes.
func scale(ctx context.Context, e *Env, o Options, rep *Report) error {
	const small = 1000
	large := o.Accounts
	if large <= small {
		return fmt.Errorf("bench: --accounts must be above %d", small)
	}
	fill := func(to int) error {
		all, err := e.Service.Store.Accounts(ctx)
		if err != nil {
			return err
		}
		have := len(all)
		if have >= to {
			return nil
		}
		start := time.Now()
		s := run(to-have, o.C*2, func(i int) error {
			_, err := request(e.Admin, "prov.account.create", fmt.Appendf(nil, `{"name":"fill-%d-%d"}`, to, i))
			return err
		})
		rep.ScaleElapsed += time.Since(start)
		if s.firstErr != nil {
			return fmt.Errorf("bench: fill to %d accounts: %w", to, s.firstErr)
		}
		return nil
	}
	samples := max(200, o.N/2)
	measure := func(size int) (map[string]time.Duration, error) {
		costs := map[string]time.Duration{}
		var firstErr error
		keep := func(s sample) time.Duration {
			if firstErr == nil && s.firstErr != nil {
				firstErr = s.firstErr
			}
			// The cost of an operation is the time the service spends per
			// operation at full concurrency.
			return s.elapsed / time.Duration(max(1, len(s.lat)))
		}
		costs["account.create"] = keep(run(samples, o.C, func(i int) error {
			_, err := request(e.Admin, "prov.account.create", fmt.Appendf(nil, `{"name":"scale-%d-%d"}`, size, i))
			return err
		}))
		accts, err := e.Service.Store.Accounts(ctx)
		if err != nil {
			return nil, err
		}
		costs["account.get"] = keep(run(samples, o.C, func(i int) error {
			_, err := request(e.Admin, "prov.account.get", fmt.Appendf(nil, `{"account":%q}`, accts[(i*7919)%len(accts)].PublicKey))
			return err
		}))
		costs["account.update"] = keep(run(samples, o.C, func(i int) error {
			_, err := request(e.Admin, "prov.account.update", fmt.Appendf(nil, `{"account":%q,"limits":{"conn":%d}}`, accts[(i*7919)%len(accts)].PublicKey, i))
			return err
		}))
		costs["user.create"] = keep(run(samples, o.C, func(i int) error {
			_, err := request(e.Admin, "prov.user.create", fmt.Appendf(nil, `{"account":%q,"name":"s%d-%d"}`, accts[(i*7919)%len(accts)].PublicKey, size, i))
			return err
		}))
		costs["account.list"] = keep(run(max(20, samples/10), min(o.C, 2), func(int) error {
			_, err := request(e.Admin, "prov.account.list", nil)
			return err
		}))
		return costs, firstErr
	}
	if err := fill(small); err != nil {
		return err
	}
	runtime.GC()
	at1, err := measure(small)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fill(large); err != nil {
		return err
	}
	runtime.GC()
	atN, err := measure(large)
	if err != nil {
		return err
	}
	rep.SmallSize, rep.LargeSize = small, large
	for _, name := range []string{"account.create", "account.get", "account.update", "user.create", "account.list"} {
		r := ScaleResult{Name: name, Small: at1[name], Large: atN[name], Ratio: ratio(float64(atN[name]), float64(at1[name]))}
		if name == "account.list" {
			r.Growth = "linear allowed"
		} else {
			r.Limit = 1.3
			r.Pass = pass(r.Ratio <= r.Limit)
		}
		rep.Scale = append(rep.Scale, r)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapBytes = ms.HeapInuse
	rep.RSSBytes = rss()
	rep.RSSLimit = 200 << 20
	rep.RSSPass = pass(rep.RSSBytes > 0 && rep.RSSBytes < rep.RSSLimit)
	return nil
}

// rss reads the process's resident set size from /proc (0 elsewhere).
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Machine describes the machine the bench runs on.
func Machine() string {
	model := runtime.GOARCH
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s/%s, %s", model, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\nn=%d c=%d\n\n", r.Machine, r.N, r.C)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tops/s\tp50\tp99\tvs floor\ttarget\t")
	for _, x := range r.Results {
		vs, target := "", ""
		if x.Floor != "" {
			vs = fmt.Sprintf("%.2f", x.Ratio)
			target = fmt.Sprintf(">= %.1f %s", x.Target, verdict(x.Pass))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t\n", x.Name, x.PerSecond, round(x.P50), round(x.P99), vs, target)
	}
	tw.Flush()
	if len(r.Scale) > 0 {
		fmt.Fprintf(w, "\nscale: cost per operation at c=%d\n", r.C)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "operation\tat %d\tat %d\tratio\ttarget\t\n", r.SmallSize, r.LargeSize)
		for _, s := range r.Scale {
			target := s.Growth
			if s.Limit > 0 {
				target = fmt.Sprintf("<= %.1f %s", s.Limit, verdict(s.Pass))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t\n", s.Name, round(s.Small), round(s.Large), s.Ratio, target)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nresident memory at %d accounts: %.1f MiB (whole process: responder, embedded nats-server and bench clients; Go heap in use %.1f MiB); target < %d MiB %s\n",
			r.LargeSize, float64(r.RSSBytes)/(1<<20), float64(r.HeapBytes)/(1<<20), r.RSSLimit>>20, verdict(r.RSSPass))
	}
}

func verdict(p *bool) string {
	switch {
	case p == nil:
		return ""
	case *p:
		return "PASS"
	}
	return "FAIL"
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// Failed reports whether any target was missed.
func (r *Report) Failed() bool {
	for _, x := range r.Results {
		if x.Pass != nil && !*x.Pass {
			return true
		}
	}
	for _, s := range r.Scale {
		if s.Pass != nil && !*s.Pass {
			return true
		}
	}
	return r.RSSPass != nil && !*r.RSSPass
}

package responder_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
	"github.com/natsprov/provisioner/service"
)

// discover sends a micro discovery request and decodes its one reply.
func discover[T any](t *testing.T, nc *nats.Conn, subject string) T {
	t.Helper()
	var v T
	m, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("%s: %v: %s", subject, err, m.Data)
	}
	return v
}

// endpointOf returns the stats of the named endpoint.
func endpointOf(t *testing.T, st micro.Stats, name string) *micro.EndpointStats {
	t.Helper()
	for _, e := range st.Endpoints {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("stats of %s have no endpoint %s", st.Name, name)
	return nil
}

func data(t *testing.T, e *micro.EndpointStats) responder.EndpointData {
	t.Helper()
	var d responder.EndpointData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatalf("endpoint %s data %s: %v", e.Name, e.Data, err)
	}
	return d
}

func inFlight(t *testing.T, e *micro.EndpointStats) int {
	t.Helper()
	return data(t, e).InFlight
}

// waitEndpoint waits until the named endpoint of r has inFlight requests
// at work and pending waiting.
func waitEndpoint(t *testing.T, r *responder.Responder, name string, inFlight, pending int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := data(t, endpointOf(t, r.Stats(), name))
		if d.InFlight == inFlight && d.Pending == pending {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d in flight and %d pending, want %d and %d", name, d.InFlight, d.Pending, inFlight, pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// extra starts another responder on the deployment, on a connection of
// its own with the provisioner's creds; it stops when the test ends.
func extra(t *testing.T, env *provtest.Env, p responder.Provisioner, cfg responder.Config) *responder.Responder {
	t.Helper()
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	if cfg.Logger == nil {
		cfg.Logger = provtest.Logger(t)
	}
	r, err := responder.New(context.Background(), nc, p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// domain makes another domain over svc's operator, store and resolver,
// changed by cfg (a wrapped store or resolver, an instance name, ...), for
// a responder of a test's own; it is closed when the test ends.
func domain(t *testing.T, svc *service.Service, cfg provision.Config) *provision.Service {
	t.Helper()
	cfg.Operator = svc.Operator
	if cfg.Store == nil {
		cfg.Store = svc.Store
	}
	if cfg.Resolver == nil {
		cfg.Resolver = svc.Resolver
	}
	if cfg.Logger == nil {
		cfg.Logger = provtest.Logger(t)
	}
	p, err := provision.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// held makes the real service's account creates wait (for hold, or until
// a gate opens) and counts how many wait at once.
type held struct {
	*provision.Service
	hold time.Duration
	gate chan struct{}

	mu        sync.Mutex
	now, most int
}

func (h *held) CreateAccount(ctx context.Context, req api.CreateAccountRequest) (*api.AccountReply, error) {
	h.mu.Lock()
	h.now++
	h.most = max(h.most, h.now)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.now--
		h.mu.Unlock()
	}()
	wait := h.gate
	if wait == nil {
		wait = make(chan struct{})
		time.AfterFunc(h.hold, func() { close(wait) })
	}
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return h.Service.CreateAccount(ctx, req)
}

func (h *held) counts() (now, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now, h.most
}

// waitHeld waits until n creates are held.
func (h *held) waitHeld(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if now, _ := h.counts(); now == n {
			return
		}
		if time.Now().After(deadline) {
			now, _ := h.counts()
			t.Fatalf("%d creates held, want %d", now, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// reply is a decoded answer.
type reply struct {
	code int
	err  error
	took time.Duration
}

// send requests subject asynchronously; the answer comes on the channel.
func send(nc *nats.Conn, subject, body string) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		start := time.Now()
		m, err := nc.Request(subject, []byte(body), 20*time.Second)
		r := reply{err: err, took: time.Since(start)}
		if err == nil {
			fmt.Sscan(m.Header.Get(micro.ErrorCodeHeader), &r.code)
		}
		ch <- r
	}()
	return ch
}

func TestMicroDiscovery(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	info := discover[micro.Info](t, h.admin, "$SRV.INFO.provisioner")
	if info.Type != micro.InfoResponseType || info.Name != "provisioner" || info.ID == "" || info.Metadata["subject_prefix"] != "prov" || info.Description == "" {
		t.Errorf("micro info = %+v", info)
	}
	want := []string{"account.create", "account.get", "account.list", "account.update", "account.delete", "account.rotate", "user.create", "user.list", "user.revoke", "reconcile", "status", "audit", "operator.rotate"}
	got := map[string]micro.EndpointInfo{}
	for _, e := range info.Endpoints {
		got[e.Subject] = e
	}
	for _, w := range want {
		e, ok := got["prov."+w]
		if !ok {
			t.Errorf("micro info lacks prov.%s", w)
			continue
		}
		if e.QueueGroup != micro.DefaultQueueGroup {
			t.Errorf("%s: queue group %q, want %q", e.Subject, e.QueueGroup, micro.DefaultQueueGroup)
		}
		for _, k := range []string{"request_schema", "response_schema"} {
			var s struct {
				Dialect string `json:"$schema"`
				Type    string `json:"type"`
			}
			if err := json.Unmarshal([]byte(e.Metadata[k]), &s); err != nil || s.Dialect != api.SchemaDialect || s.Type != "object" {
				t.Errorf("%s: metadata %s = %q (%v)", e.Subject, k, e.Metadata[k], err)
			}
		}
	}
	if len(info.Endpoints) != len(want) {
		t.Errorf("micro info lists %d endpoints, want %d", len(info.Endpoints), len(want))
	}

	// Every discovery subject answers, for this one instance.
	for _, subj := range []string{"$SRV.PING", "$SRV.PING.provisioner", "$SRV.PING.provisioner." + info.ID} {
		p := discover[micro.Ping](t, h.admin, subj)
		if p.Type != micro.PingResponseType || p.ID != info.ID || p.Version != info.Version {
			t.Errorf("%s = %+v", subj, p)
		}
	}
	for _, subj := range []string{"$SRV.INFO", "$SRV.INFO.provisioner." + info.ID} {
		if i := discover[micro.Info](t, h.admin, subj); i.ID != info.ID || len(i.Endpoints) != len(want) {
			t.Errorf("%s = %+v", subj, i)
		}
	}

	h.ok(t, "account.list", `{}`)
	if r := h.req(t, "account.get", `{"account":"nope"}`); r.Code != 404 {
		t.Fatalf("account.get nope: %d", r.Code)
	}
	for _, subj := range []string{"$SRV.STATS", "$SRV.STATS.provisioner", "$SRV.STATS.provisioner." + info.ID} {
		st := discover[micro.Stats](t, h.admin, subj)
		if st.Type != micro.StatsResponseType || st.ID != info.ID || st.Started.IsZero() {
			t.Errorf("%s = %+v", subj, st)
		}
		get, list, create := endpointOf(t, st, "account_get"), endpointOf(t, st, "account_list"), endpointOf(t, st, "account_create")
		switch {
		case get.NumRequests != 1 || get.NumErrors != 1 || !strings.HasPrefix(get.LastError, "404:") || !strings.Contains(get.LastError, "nope"):
			t.Errorf("%s: account_get %d requests, %d errors, last %q; want 1, 1, the 404", subj, get.NumRequests, get.NumErrors, get.LastError)
		case get.ProcessingTime <= 0 || get.AverageProcessingTime != get.ProcessingTime:
			t.Errorf("%s: account_get processing time %v, average %v", subj, get.ProcessingTime, get.AverageProcessingTime)
		case list.NumRequests != 1 || list.NumErrors != 0 || list.LastError != "" || list.ProcessingTime <= 0:
			t.Errorf("%s: account_list = %+v, want 1 request without error", subj, list)
		case create.NumRequests != 0 || create.ProcessingTime != 0:
			t.Errorf("%s: account_create = %+v, want nothing", subj, create)
		case get.QueueGroup != micro.DefaultQueueGroup || get.Subject != "prov.account.get":
			t.Errorf("%s: account_get = %+v", subj, get)
		case inFlight(t, get) != 0:
			t.Errorf("%s: account_get in flight %s", subj, get.Data)
		}
	}
}

// TestStatsCountTheRealWork: an account create's time in the stats is the
// work it took, not the hand-off to a goroutine: at least one push's round
// trip to the server (every create pushes), at most what the caller saw.
func TestStatsCountTheRealWork(t *testing.T) {
	h := newHarness(t, bootstrap.Options{})
	const n = 5
	var seen time.Duration
	var jwts []string
	for i := range n {
		start := time.Now()
		b := h.ok(t, "account.create", fmt.Sprintf(`{"name":"a%d"}`, i))
		seen += time.Since(start)
		jwts = append(jwts, str(b, "account", "jwt"))
	}
	// The push's round trip, timed alone: the same JWTs again (the server
	// stores what it gets, so this changes nothing).
	sys := h.env.Connect(t, h.env.Init.ProvisionerCreds)
	push := time.Hour
	for _, j := range jwts {
		start := time.Now()
		if _, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(j), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		push = min(push, time.Since(start))
	}
	st := discover[micro.Stats](t, h.admin, "$SRV.STATS.provisioner")
	c := endpointOf(t, st, "account_create")
	t.Logf("%d creates: the caller saw %v in all, the stats %v (average %v); one push takes %v", n, seen, c.ProcessingTime, c.AverageProcessingTime, push)
	if c.NumRequests != n || c.NumErrors != 0 {
		t.Errorf("account_create: %d requests, %d errors; want %d, 0", c.NumRequests, c.NumErrors, n)
	}
	if c.AverageProcessingTime < push {
		t.Errorf("a create's processing time averages %v, less than one push's round trip (%v): the stats do not see the work", c.AverageProcessingTime, push)
	}
	if c.ProcessingTime > seen {
		t.Errorf("the stats count %v for creates the caller saw take %v", c.ProcessingTime, seen)
	}
	if r := h.req(t, "account.create", `{"name":"a0"}`); r.Code != 409 {
		t.Fatalf("a second a0: %d", r.Code)
	}
	c = endpointOf(t, discover[micro.Stats](t, h.admin, "$SRV.STATS.provisioner"), "account_create")
	if c.NumRequests != n+1 || c.NumErrors != 1 || !strings.HasPrefix(c.LastError, "409:") || !strings.Contains(c.LastError, "a0") {
		t.Errorf("account_create: %d requests, %d errors, last %q; want %d, 1, the 409", c.NumRequests, c.NumErrors, c.LastError, n+1)
	}
}

// TestMicroStatsThroughNatsCLI: the real nats CLI, with the admin creds,
// reads the service's own columns (and validates the replies against the
// micro schemas as it does).
func TestMicroStatsThroughNatsCLI(t *testing.T) {
	natsCLI := provtest.Tool(t, "nats")
	h := newHarness(t, bootstrap.Options{})
	if r := h.req(t, "account.get", `{"account":"nope"}`); r.Code != 404 {
		t.Fatalf("account.get nope: %d", r.Code)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "NOVALIDATE=") {
			env = append(env, kv)
		}
	}
	env = append(env, "XDG_CONFIG_HOME="+t.TempDir())
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, natsCLI, append([]string{"--server", h.env.Server.URL(), "--creds", h.env.Init.AdminCreds, "--inbox-prefix", bootstrap.AdminInboxPrefix, "--timeout", "3s"}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	var stats []micro.Stats
	out := run("micro", "stats", "provisioner", "--json")
	if err := json.Unmarshal(out, &stats); err != nil || len(stats) != 1 {
		t.Fatalf("nats micro stats --json: %v\n%s", err, out)
	}
	get := endpointOf(t, stats[0], "account_get")
	if get.NumRequests != 1 || get.NumErrors != 1 || !strings.HasPrefix(get.LastError, "404:") || get.ProcessingTime <= 0 {
		t.Errorf("nats micro stats: account_get = %+v, want 1 request, 1 error (the 404)", get)
	}

	var info struct {
		Info  micro.Info  `json:"info"`
		Stats micro.Stats `json:"stats"`
	}
	out = run("micro", "info", "provisioner", "--json")
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("nats micro info --json: %v\n%s", err, out)
	}
	if info.Info.ID != stats[0].ID || len(info.Info.Endpoints) == 0 || endpointOf(t, info.Stats, "account_get").NumErrors != 1 {
		t.Errorf("nats micro info: %s", out)
	}
	for _, e := range info.Info.Endpoints {
		if !strings.Contains(e.Metadata["request_schema"], api.SchemaDialect) || !strings.Contains(e.Metadata["response_schema"], api.SchemaDialect) {
			t.Errorf("nats micro info: endpoint %s has no schemas: %v", e.Name, e.Metadata)
		}
	}
	var ls []micro.Info
	out = run("micro", "ls", "--json")
	if err := json.Unmarshal(out, &ls); err != nil || len(ls) != 1 || ls[0].Name != "provisioner" {
		t.Errorf("nats micro ls --json: %v\n%s", err, out)
	}
}

// TestRequestsRunConcurrently: requests are not served one at a time,
// and MaxInflight bounds how many run at once, the wait for a slot
// counted in the stats.
func TestRequestsRunConcurrently(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	const hold = 300 * time.Millisecond

	t.Run("unbounded", func(t *testing.T) {
		slow := &held{Service: svc.Provision, hold: hold}
		r := extra(t, env, slow, responder.Config{Prefix: "prov.slow", Name: "slow"})
		const n = 16
		start := time.Now()
		var replies []<-chan reply
		for i := range n {
			replies = append(replies, send(admin, "prov.slow.account.create", fmt.Sprintf(`{"name":"c%d"}`, i)))
		}
		for _, ch := range replies {
			if r := <-ch; r.err != nil || r.code != 0 {
				t.Errorf("create: %v %d", r.err, r.code)
			}
		}
		wall := time.Since(start)
		if _, most := slow.counts(); most != n {
			t.Errorf("at most %d creates ran at once, want all %d", most, n)
		}
		if wall > 4*hold {
			t.Errorf("%d creates that take %v each took %v together; one at a time they take %v", n, hold, wall, n*hold)
		}
		c := endpointOf(t, r.Stats(), "account_create")
		if c.NumRequests != n || c.ProcessingTime < n*hold || c.AverageProcessingTime < hold || c.AverageProcessingTime > wall {
			t.Errorf("stats: %d requests, %v in all, average %v; want %d, at least %v each, at most %v", c.NumRequests, c.ProcessingTime, c.AverageProcessingTime, n, hold, wall)
		}
		t.Logf("%d creates held %v each: %v together; stats average %v", n, hold, wall, c.AverageProcessingTime)
	})

	t.Run("bounded", func(t *testing.T) {
		const limit, n = 4, 12
		slow := &held{Service: svc.Provision, gate: make(chan struct{})}
		r := extra(t, env, slow, responder.Config{Prefix: "prov.bounded", Name: "bounded", MaxInflight: limit})
		var replies []<-chan reply
		for i := range n {
			replies = append(replies, send(admin, "prov.bounded.account.create", fmt.Sprintf(`{"name":"b%d"}`, i)))
		}
		// MaxInflight at work, the rest waiting for a slot.
		waitEndpoint(t, r, "account_create", limit, n-limit)
		time.Sleep(100 * time.Millisecond)
		if now, _ := slow.counts(); now != limit {
			t.Errorf("%d creates at work with MaxInflight %d", now, limit)
		}
		close(slow.gate)
		for _, ch := range replies {
			if r := <-ch; r.err != nil || r.code != 0 {
				t.Errorf("create: %v %d", r.err, r.code)
			}
		}
		if _, most := slow.counts(); most != limit {
			t.Errorf("at most %d creates ran at once, want MaxInflight %d", most, limit)
		}
		c := endpointOf(t, r.Stats(), "account_create")
		if d := data(t, c); c.NumRequests != n || d.InFlight != 0 || d.Pending != 0 {
			t.Errorf("after: %+v", c)
		}
	})
}

// TestSlowEndpointDoesNotHoldOthers: while a create waits, the other
// endpoints answer, and the stats show the create in flight.
func TestSlowEndpointDoesNotHoldOthers(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	r := extra(t, env, slow, responder.Config{Prefix: "prov.slow", Name: "slow"})
	created := send(admin, "prov.slow.account.create", `{"name":"acme"}`)
	slow.waitHeld(t, 1)
	heldAt := time.Now()

	for _, q := range []struct{ op, body string }{{"account.list", `{}`}, {"status", `{}`}, {"account.get", `{"account":"nope"}`}} {
		start := time.Now()
		if _, err := admin.Request("prov.slow."+q.op, []byte(q.body), 2*time.Second); err != nil {
			t.Fatalf("%s while a create waits: %v", q.op, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s took %v while a create waited", q.op, took)
		}
	}
	st := r.Stats()
	if c := endpointOf(t, st, "account_create"); inFlight(t, c) != 1 || c.NumRequests != 0 {
		t.Errorf("account_create while held: %d in flight, %d requests; want 1 and 0", inFlight(t, c), c.NumRequests)
	}
	if l := endpointOf(t, st, "account_list"); l.NumRequests != 1 || inFlight(t, l) != 0 {
		t.Errorf("account_list = %+v", l)
	}
	time.Sleep(100 * time.Millisecond)
	close(slow.gate)
	if r := <-created; r.err != nil || r.code != 0 {
		t.Fatalf("the held create: %v %d", r.err, r.code)
	}
	heldFor := time.Since(heldAt)
	c := endpointOf(t, r.Stats(), "account_create")
	if c.NumRequests != 1 || inFlight(t, c) != 0 || c.ProcessingTime < 100*time.Millisecond || c.ProcessingTime > heldFor+time.Second {
		t.Errorf("account_create after release: %+v; it was held for %v", c, heldFor)
	}
}

// TestStopWaitsAndRefuses: Stop waits for the request in flight and the
// ones already taken, answers those still queued 503, and leaves
// discovery.
func TestStopWaitsAndRefuses(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	// One slot: the create takes it, the first list waits for it in its
	// handler, the others wait in the subscription.
	r := extra(t, env, slow, responder.Config{Prefix: "prov.stopping", Name: "stopping", MaxInflight: 1})
	created := send(admin, "prov.stopping.account.create", `{"name":"acme"}`)
	slow.waitHeld(t, 1)
	taken := send(admin, "prov.stopping.account.list", `{}`)
	waitEndpoint(t, r, "account_list", 0, 1)
	queued := []<-chan reply{send(admin, "prov.stopping.account.list", `{}`), send(admin, "prov.stopping.account.list", `{}`)}
	waitEndpoint(t, r, "account_list", 0, 3)

	stopped := make(chan error, 1)
	go func() { stopped <- r.Stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	late := send(admin, "prov.stopping.account.list", `{}`)
	close(slow.gate)
	if r := <-created; r.err != nil || r.code != 0 {
		t.Errorf("the create in flight: %v %d, want its result", r.err, r.code)
	}
	if r := <-taken; r.err != nil || r.code != 0 {
		t.Errorf("the list that had been taken: %v %d, want its result", r.err, r.code)
	}
	for _, ch := range queued {
		if r := <-ch; r.err != nil || r.code != 503 {
			t.Errorf("a list queued when Stop began: %v %d, want 503", r.err, r.code)
		}
	}
	if r := <-late; !errors.Is(r.err, nats.ErrNoResponders) && r.code != 503 {
		t.Errorf("a list sent while stopping: %v %d, want 503 or no responders", r.err, r.code)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return once the requests were answered")
	}
	if _, err := admin.Request("$SRV.PING.stopping", nil, time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("a stopped responder still answers PING: %v", err)
	}
	l := endpointOf(t, r.Stats(), "account_list")
	if l.NumRequests < 3 || l.NumErrors < 2 || !strings.HasPrefix(l.LastError, "503:") {
		t.Errorf("account_list after Stop: %+v, want the 503s counted", l)
	}
	if err := r.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}

// TestInstancesShareRequests: two responders of one name share each
// endpoint's requests through micro's queue group, and each counts its
// own.
func TestInstancesShareRequests(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	a := extra(t, env, svc.Provision, responder.Config{Prefix: "prov.pair", Name: "pair"})
	b := extra(t, env, svc.Provision, responder.Config{Prefix: "prov.pair", Name: "pair"})
	const n = 40
	for range n {
		if r := provtest.Request(t, admin, "prov.pair.account.list", `{}`); r.Code != 0 {
			t.Fatalf("account.list: %d %q", r.Code, r.Description)
		}
	}
	total := 0
	for _, r := range []*responder.Responder{a, b} {
		st := discover[micro.Stats](t, admin, "$SRV.STATS.pair."+r.Info().ID)
		l := endpointOf(t, st, "account_list")
		if l.NumRequests == 0 || l.QueueGroup != micro.DefaultQueueGroup {
			t.Errorf("instance %s: %+v; want a share of the requests in queue group q", st.ID, l)
		}
		total += l.NumRequests
	}
	if total != n {
		t.Errorf("the instances counted %d requests, want %d", total, n)
	}
	inbox := admin.NewInbox()
	sub, err := admin.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.PublishRequest("$SRV.PING.pair", inbox, nil); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for range 2 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var p micro.Ping
		json.Unmarshal(m.Data, &p)
		ids[p.ID] = true
	}
	if !ids[a.Info().ID] || !ids[b.Info().ID] || a.Info().ID == b.Info().ID {
		t.Errorf("PING answered by %v, want %s and %s", ids, a.Info().ID, b.Info().ID)
	}
}

// faulty makes the real service panic on account.get and reply more than
// a message can carry on account.list.
type faulty struct {
	*provision.Service
}

func (faulty) GetAccount(context.Context, api.AccountRequest) (*api.AccountReply, error) {
	panic("a bug")
}

func (faulty) ListAccounts(context.Context, api.ListRequest) (*api.ListAccountsReply, error) {
	rep := &api.ListAccountsReply{}
	for i := range 20000 {
		rep.Accounts = append(rep.Accounts, api.AccountSummary{Name: fmt.Sprintf("account-%06d", i), PublicKey: strings.Repeat("A", 56)})
	}
	rep.Total = len(rep.Accounts)
	return rep, nil
}

// TestFaultsAreErrors: a panic and a reply over max_payload are 500s
// that the stats count, and the responder goes on serving.
func TestFaultsAreErrors(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	r := extra(t, env, faulty{svc.Provision}, responder.Config{Prefix: "prov.faulty", Name: "faulty"})
	for range 2 {
		if rep := provtest.Request(t, admin, "prov.faulty.account.get", `{"account":"acme"}`); rep.Code != 500 || !strings.Contains(rep.Description, "internal error (ref ") || strings.Contains(rep.Description, "a bug") {
			t.Errorf("a panic: %d %q, want a 500 pointing to the log", rep.Code, rep.Description)
		}
	}
	// The reply over max_payload says so: it is no bug to look up in the
	// log, and the caller can act on it.
	if rep := provtest.Request(t, admin, "prov.faulty.account.list", `{}`); rep.Code != 500 || !strings.Contains(rep.Description, "over the servers' max_payload") {
		t.Errorf("a reply over max_payload: %d %q, want 500 saying so", rep.Code, rep.Description)
	}
	if rep := provtest.Request(t, admin, "prov.faulty.status", `{}`); rep.Code != 0 {
		t.Errorf("status after the faults: %d %q", rep.Code, rep.Description)
	}
	st := r.Stats()
	if g := endpointOf(t, st, "account_get"); g.NumRequests != 2 || g.NumErrors != 2 || !strings.HasPrefix(g.LastError, "500:internal error (ref ") {
		t.Errorf("account_get = %+v, want 2 requests, 2 errors", g)
	}
	if l := endpointOf(t, st, "account_list"); l.NumRequests != 1 || l.NumErrors != 1 || !strings.HasPrefix(l.LastError, "500:") {
		t.Errorf("account_list = %+v, want the oversized reply counted as an error", l)
	}
}

// TestDroppedRequestsCount: requests the client library drops because an
// endpoint is too far behind are counted as errors.
func TestDroppedRequestsCount(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	r := extra(t, env, slow, responder.Config{Prefix: "prov.behind", Name: "behind", MaxInflight: 1})
	if err := r.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	created := send(admin, "prov.behind.account.create", `{"name":"acme"}`)
	slow.waitHeld(t, 1)
	// The first create waits for the slot in its handler, and holds the
	// only pending place; the rest are dropped.
	const n = 5
	for i := range n {
		admin.PublishRequest("prov.behind.account.create", admin.NewInbox(), fmt.Appendf(nil, `{"name":"x%d"}`, i))
	}
	admin.Flush()
	// A round trip to the instance: the creates reached it before.
	time.Sleep(50 * time.Millisecond)
	discover[micro.Ping](t, admin, "$SRV.PING.behind."+r.Info().ID)
	c := endpointOf(t, r.Stats(), "account_create")
	if d := data(t, c); c.NumErrors != n-1 || c.NumRequests != n-1 || !strings.Contains(c.LastError, "slow consumer") || d.InFlight != 1 || d.Pending != 1 {
		t.Errorf("account_create with %d dropped: %+v", n-1, c)
	}
	close(slow.gate)
	if r := <-created; r.err != nil || r.code != 0 {
		t.Errorf("the held create: %v %d", r.err, r.code)
	}
	// Counted once.
	if again := endpointOf(t, r.Stats(), "account_create"); again.NumErrors != n-1 {
		t.Errorf("after the release: %d errors, want %d", again.NumErrors, n-1)
	}
}

// TestDroppedInstanceStatusCount: requests dropped on an instance's own
// status subject (prov.status.<instance>, outside the queue group) count
// in the status endpoint's stats, as its doc comment says its requests do:
// they were dropped unanswered and nothing counted them.
func TestDroppedInstanceStatusCount(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	r := extra(t, env, slow, responder.Config{Prefix: "prov.behindi", Name: "behindi", Instance: "i1", MaxInflight: 1})
	if err := r.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	created := send(admin, "prov.behindi.account.create", `{"name":"acme"}`)
	slow.waitHeld(t, 1)
	// The first status request waits for the slot in its handler, and
	// holds the only pending place; the rest are dropped.
	const n = 5
	subj := api.InstanceStatusSubject("prov.behindi", "i1")
	for range n {
		admin.PublishRequest(subj, admin.NewInbox(), []byte(`{}`))
	}
	admin.Flush()
	time.Sleep(50 * time.Millisecond)
	discover[micro.Ping](t, admin, "$SRV.PING.behindi."+r.Info().ID)
	dropped, err := r.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if dropped == 0 {
		t.Fatal("no request was dropped")
	}
	if st := endpointOf(t, r.Stats(), "status"); st.NumErrors != dropped || st.NumRequests != dropped || !strings.Contains(st.LastError, "slow consumer") || data(t, st).Pending != 1 {
		t.Errorf("status with %d dropped on %s: %+v", dropped, subj, st)
	}
	close(slow.gate)
	if r := <-created; r.err != nil || r.code != 0 {
		t.Errorf("the held create: %v %d", r.err, r.code)
	}
}

// TestSelfServiceStats: the self-service responder, in the service's own
// account, counts and describes itself the same way.
func TestSelfServiceStats(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	h.ok(t, "account.create", tenantAccount)
	enroller, _ := h.userCreds(t, `{"account":"acme","name":"backend","role":"enroller"}`)
	tenant := env.Connect(t, enroller)
	if r := provtest.Request(t, tenant, "prov.self.user.list", `{}`); r.Code != 0 {
		t.Fatalf("self.user.list: %d %q", r.Code, r.Description)
	}
	if r := provtest.Request(t, tenant, "prov.self.user.revoke", `{"user":"nobody"}`); r.Code != 404 {
		t.Fatalf("self.user.revoke of nobody: %d %q", r.Code, r.Description)
	}
	st := svc.Self.Stats()
	if st.Type != micro.StatsResponseType || st.Name != "provisioner-self" {
		t.Errorf("self stats = %+v", st)
	}
	if l := endpointOf(t, st, "self_user_list"); l.NumRequests != 1 || l.NumErrors != 0 || l.ProcessingTime <= 0 {
		t.Errorf("self_user_list = %+v", l)
	}
	if r := endpointOf(t, st, "self_user_revoke"); r.NumRequests != 1 || r.NumErrors != 1 || !strings.HasPrefix(r.LastError, "404:") {
		t.Errorf("self_user_revoke = %+v", r)
	}
	info := svc.Self.Info()
	for _, e := range info.Endpoints {
		if !strings.HasPrefix(e.Subject, "prov.self.*.user.") || e.QueueGroup != micro.DefaultQueueGroup || !strings.Contains(e.Metadata["request_schema"], `"title":"Self`) {
			t.Errorf("self endpoint %+v", e)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	nc := env.Connect(t, env.Init.ProvisionerCreds)
	for _, cfg := range []responder.Config{
		{Prefix: "prov.x", Name: "has space"},
		{Prefix: "prov.x", Name: "x", Version: "1.0"},
	} {
		if r, err := responder.New(context.Background(), nc, svc.Provision, cfg); !errors.Is(err, responder.ErrConfig) {
			if r != nil {
				r.Stop()
			}
			t.Errorf("New with %+v: %v, want ErrConfig", cfg, err)
		}
	}
}

// TestWorkersAreReused: requests run on workers that stay for the next
// request instead of a goroutine each (whose stack grows anew every
// time), and Stop ends the idle workers at once.
func TestWorkersAreReused(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	r := extra(t, env, svc.Provision, responder.Config{Prefix: "prov.pooled", Name: "pooled"})
	const n = 100
	for range n {
		if rep := provtest.Request(t, admin, "prov.pooled.status", `{}`); rep.Code != 0 {
			t.Fatalf("status: %d %q", rep.Code, rep.Description)
		}
	}
	started, live := r.Workers()
	if started > n/4 || live == 0 {
		t.Fatalf("%d sequential requests started %d workers, %d still running; want a few, kept", n, started, live)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second) // well under workerIdle
	for {
		if _, live := r.Workers(); live == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle workers still running a second after Stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDroppedRequestsCountedAfterStop: requests dropped by the client
// library are counted even when nobody asked for the stats before Stop
// (once the subscription is closed, Dropped() fails and the drops are
// lost).
func TestDroppedRequestsCountedAfterStop(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	r := extra(t, env, slow, responder.Config{Prefix: "prov.behind2", Name: "behind2", MaxInflight: 1})
	if err := r.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	created := send(admin, "prov.behind2.account.create", `{"name":"acme"}`)
	slow.waitHeld(t, 1)
	const n = 5
	for i := range n {
		admin.PublishRequest("prov.behind2.account.create", admin.NewInbox(), fmt.Appendf(nil, `{"name":"x%d"}`, i))
	}
	admin.Flush()
	// The held request fills MaxInflight, the first of the n takes the one
	// pending place, and the client library drops the rest; the gate opens
	// once it did (a fixed sleep was too short beside other packages' race
	// tests, and the later requests were then answered instead).
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := r.Dropped()
		if err != nil {
			t.Fatal(err)
		}
		if d == n-1 {
			break
		}
		if d > n-1 || time.Now().After(deadline) {
			t.Fatalf("%d requests dropped by the client library, want %d", d, n-1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(slow.gate)
	if rep := <-created; rep.err != nil || rep.code != 0 {
		t.Fatalf("the held create: %v %d", rep.err, rep.code)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	// held create + the one pending place answered; n-1 dropped.
	c := endpointOf(t, r.Stats(), "account_create")
	if c.NumRequests != 1+1+(n-1) || c.NumErrors < n-1 {
		t.Errorf("account_create after Stop: %d requests, %d errors (last %q); want %d requests with the %d dropped counted as errors", c.NumRequests, c.NumErrors, c.LastError, 1+1+(n-1), n-1)
	}
}

// TestRequestTimeoutIsNotInternal: a request whose work outlasts
// RequestTimeout (the handler returns ctx.Err(), as provision's afterIssue
// does) is answered 504 saying so, not as an internal error.
func TestRequestTimeoutIsNotInternal(t *testing.T) {
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	slow := &held{Service: svc.Provision, gate: make(chan struct{})}
	extra(t, env, slow, responder.Config{Prefix: "prov.timeout", Name: "timeout", RequestTimeout: 200 * time.Millisecond})
	rep := provtest.Request(t, admin, "prov.timeout.account.create", `{"name":"acme"}`)
	if rep.Code != 504 || !strings.Contains(rep.Description, "request_timeout 200ms") || !strings.Contains(rep.Description, "may have taken effect") {
		t.Errorf("a request past RequestTimeout: %d %q, want 504 naming request_timeout", rep.Code, rep.Description)
	}
}

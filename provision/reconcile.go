package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"golang.org/x/time/rate"

	"github.com/natsprov/provisioner/api"
)

// eachAccount calls f for each account, reconcileWorkers at a time, and
// hands out no more once ctx is done.
func eachAccount(ctx context.Context, accounts []Account, f func(Account)) {
	work := make(chan Account)
	var wg sync.WaitGroup
	for range reconcileWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				f(a)
			}
		}()
	}
	for _, a := range accounts {
		select {
		case work <- a:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
}

// reconcileWorkers bounds how many accounts a pass works on at once, so that
// a pass over 10,000 accounts does not flood the servers.
const reconcileWorkers = 8

// leaseName is the lease the reconciling instance holds.
const leaseName = "reconciler"

// reconciler is the state of the reconcile loop.
type reconciler struct {
	kick chan struct{}
	// running holds the pass under way: one at a time. A pass waits for
	// it only until its context ends: the reconcile loop's, waiting
	// behind a pass prov.reconcile started, held a stop (which ends that
	// pass only after the loop) until that pass ended by itself.
	running chan struct{}
	// leaderUntil is when the reconciler lease this instance holds may
	// end (unix nanoseconds; 0: it holds none), as keepLease counts it. A
	// TryLease that fails (the bucket away) leaves it to run out: the
	// instance is no leader past it, whatever it last heard, since
	// another instance may have taken the lease over.
	leaderUntil atomic.Int64
	mu          sync.Mutex
	last        *api.ReconcileReply
	// next is the requested pass (prov.reconcile) not yet started, which
	// later requests join; manual are the passes requests started, which
	// go on past their requests until life ends (Close).
	next   *manualPass
	manual sync.WaitGroup
	life   context.Context
	end    context.CancelFunc
	// passes counts the passes this instance ran as the reconciler: a
	// push to a cache resolver that skipped it waits for a later one.
	passes atomic.Uint64
	// overMax holds the JWT of each account whose push was over the
	// servers' max_payload, by public key, as last logged: logged once
	// until the account changes.
	overMax sync.Map
	// unreadable holds the public keys, joined, of the accounts whose
	// records the last pass could not read: logged once until they
	// change.
	unreadable atomic.Value
}

// manualPass is a pass prov.reconcile asked for.
type manualPass struct {
	started time.Time     // when it started; zero before (under mu)
	done    chan struct{} // closed when rep and err are set
	rep     *api.ReconcileReply
	err     error
}

func (r *reconciler) init() {
	r.kick = make(chan struct{}, 1)
	r.running = make(chan struct{}, 1)
	r.life, r.end = context.WithCancel(context.Background())
}

// Kick asks for a reconcile pass soon, as after a reconnect to NATS: what
// was pushed while disconnected may have reached no server.
func (s *Service) Kick() {
	select {
	case s.rec.kick <- struct{}{}:
	default:
	}
}

// Run reconciles until ctx ends: a pass at once, then every
// ReconcileInterval, when kicked, and when a server (re)joins — a server
// that returns from an outage starts with its old disk, so every version it
// has not confirmed is pushed again at once, deletes first.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	joined := s.resolver.Joined()
	for {
		if _, err := s.pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reconcile pass failed; the next one tries again", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.rec.kick:
		case srv := <-joined:
			s.log.Info("server joined; pushing every version it has not confirmed", "server", srv.Name, "server_id", srv.ID)
			s.confirm.forgetServer(srv.Name, srv.ID)
		}
	}
}

// Reconcile runs a pass now and returns its summary (prov.reconcile): a
// pass that starts after the request, joined by the requests that come
// before it starts. The pass is not bound to the request: one that has not
// ended by nine tenths of ctx's deadline (request_timeout) goes on, the
// reply says it is running, and prov.status reports it once it ended. A
// pass cut off at each request's deadline would start over at the next
// request and, over enough accounts (reconcile_rate LOOKUPs a second),
// never end.
func (s *Service) Reconcile(ctx context.Context, _ api.ReconcileRequest) (*api.ReconcileReply, error) {
	r := &s.rec
	r.mu.Lock()
	if r.life.Err() != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: the service is stopping", ErrUnavailable)
	}
	m := r.next
	if m == nil {
		m = &manualPass{done: make(chan struct{})}
		r.next = m
		r.manual.Add(1)
		go func() {
			defer r.manual.Done()
			m.rep, m.err = s.passStarted(r.life, func() {
				r.mu.Lock()
				if r.next == m {
					r.next = nil
				}
				m.started = time.Now()
				r.mu.Unlock()
			})
			close(m.done)
		}()
	}
	r.mu.Unlock()
	var due <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		timer := time.NewTimer(time.Until(dl) * 9 / 10)
		defer timer.Stop()
		due = timer.C
	}
	select {
	case <-m.done:
		return m.rep, m.err
	case <-due:
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// Cut, not timed out (due comes first): a stop cuts its
			// requests, and the pass ends with the service right after
			// (Close), so "running" named an instance that would never
			// report it. The request's error, as for any request cut.
			return nil, ctx.Err()
		}
	}
	// prov.status goes to any instance of the queue group, which reports
	// its own last pass: the reply names this one, and where it alone
	// answers.
	running := &api.ReconcileReply{Running: true, Orphans: []string{}, Instance: s.cfg.Instance, StatusSubject: api.InstanceStatusSubject(s.cfg.SubjectPrefix, s.cfg.Instance)}
	r.mu.Lock()
	if !m.started.IsZero() {
		running.Started = m.started.UTC().Format(time.RFC3339)
	}
	r.mu.Unlock()
	return running, nil
}

// Status describes this instance (prov.status).
func (s *Service) Status(_ context.Context, _ api.StatusRequest) (*api.StatusReply, error) {
	// The signing key's public key only: operator finish names the
	// instances still signing with the old one.
	out := &api.StatusReply{Instance: s.cfg.Instance, Store: s.cfg.StoreKind, Version: s.cfg.Version, Role: "follower", Servers: []api.ServerStatus{}, SigningKey: s.operator().SignerKey}
	if s.leader() {
		out.Role = "leader"
	}
	for _, srv := range s.resolver.Servers() {
		st := api.ServerStatus{Name: srv.Name, ID: srv.ID, Up: srv.Up}
		// A server that gets no account pushed is said, not only logged.
		switch {
		case srv.NoResolver:
			st.Resolver = "none"
		case srv.Cache:
			st.Resolver = "cache"
		}
		if !srv.LastSeen.IsZero() {
			st.LastSeen = srv.LastSeen.UTC().Format(time.RFC3339)
		}
		out.Servers = append(out.Servers, st)
	}
	s.rec.mu.Lock()
	if s.rec.last != nil {
		last := *s.rec.last
		out.LastReconcile = &last
	}
	s.rec.mu.Unlock()
	if err := s.store.Broken(); err != nil {
		out.Problem = err.Error()
	} else if err := s.SignerProblem(); err != nil {
		out.Problem = err.Error()
	} else if err := s.SealProblem(); err != nil {
		out.Problem = err.Error()
	} else if s.cfg.Problem != nil {
		if err := s.cfg.Problem(); err != nil {
			out.Problem = err.Error()
		}
	}
	// Alongside any problem: it is the bucket's, not this instance's.
	if err := s.Damage(); err != nil {
		out.Damage = err.Error()
	}
	return out, nil
}

// pass brings every server in line with the store:
//   - an account whose current version some server has not confirmed is
//     pushed again; the others are checked with a rate-limited LOOKUP, all
//     replies counted and compared with the store's JWT (that catches sync
//     swaps, pushes from elsewhere and servers restored from old disks);
//   - deletes move on: the disabled version pushed, then the DELETE once
//     every known server has confirmed it; a deleted account found on a
//     server again is disabled and deleted again;
//   - accounts on the servers that the store does not know are orphans:
//     reported and logged, never deleted;
//   - an expired account gets no new version, but is checked and pushed
//     again like any other.
func (s *Service) pass(ctx context.Context) (*api.ReconcileReply, error) {
	return s.passStarted(ctx, func() {})
}

// passStarted is pass, calling started once no other pass runs.
func (s *Service) passStarted(ctx context.Context, started func()) (*api.ReconcileReply, error) {
	select {
	case s.rec.running <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.rec.running }()
	started()
	// Every instance, leader or not, takes up a rotated operator signing
	// key once the servers trust it.
	rotated := s.adoptNextOperator(ctx)
	signing := s.passSigner(rotated, s.checkSigner(ctx))
	// Every instance takes back its own failed creates whose take-back
	// failed: no other instance knows of them.
	s.retakeAbandoned(ctx)
	s.deletesProbe.Store(true)
	start := time.Now()
	rep := &api.ReconcileReply{Started: start.UTC().Format(time.RFC3339), Orphans: []string{}}
	finish := func() (*api.ReconcileReply, error) {
		if rep.Skipped == "" && ctx.Err() != nil && !errors.Is(context.Cause(ctx), errLeaseLost) {
			rep.Skipped = "the service stopped during the pass; it stopped"
		}
		rep.Duration = time.Since(start).Round(time.Millisecond).String()
		s.rec.mu.Lock()
		s.rec.last = rep
		s.rec.mu.Unlock()
		return rep, nil
	}
	if s.cfg.Leader != nil && s.SealProblem() != nil {
		// It cannot read every account record (another instance seals
		// with a seal key it lacks): every pass it led failed reading
		// all accounts, and while it held the lease no instance that
		// can read them reconciled. It leaves the lease to those.
		// Released whether or not its own view of the lease (s.leader())
		// has run out: that view ends before the lease in the bucket
		// does, and a pass that came a little late left the lease held
		// there for a whole ttl more. Release only deletes a lease that
		// holds this instance's token.
		if l, ok := s.cfg.Leader.(leaseReleaser); ok {
			if err := l.ReleaseLease(ctx, leaseName); err != nil {
				s.log.Warn("could not give up the reconciler lease; it runs out", "error", err)
			}
		}
		s.holdLease(false, time.Time{})
		rep.Skipped = "this instance cannot read every account record (seal key, see problem); it leaves the reconciler lease to instances that can"
		return finish()
	}
	if s.cfg.Leader != nil {
		taken := time.Now()
		held, err := s.cfg.Leader.TryLease(ctx, leaseName, 3*s.cfg.ReconcileInterval)
		if err != nil {
			return nil, err
		}
		s.holdLease(held, taken)
		if !held {
			s.forgetRemoved(ctx)
			rep.Skipped = "another instance holds the reconciler lease"
			return finish()
		}
		// The lease is held for its ttl from now: a pass that lasts longer
		// (a slow server, or more accounts than reconcile_rate checks in
		// that time) renews it as it goes, and stops once it may have
		// lost it. Not renewed, another instance took it over and both
		// reconciled at once.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		stop := s.keepLease(ctx, cancel, taken)
		// The pass's context ends first: a renewal under way runs on it,
		// and with the bucket hanging it held the finished pass (its
		// reply, the next pass) until the store's timeout.
		defer func() {
			cancel(nil)
			stop()
		}()
		outer := finish
		finish = func() (*api.ReconcileReply, error) {
			if errors.Is(context.Cause(ctx), errLeaseLost) {
				s.holdLease(false, time.Time{})
				s.log.Warn("reconcile pass stopped: the reconciler lease could not be renewed")
				rep.Skipped = "the reconciler lease was lost during the pass; it stopped"
			}
			return outer()
		}
	}
	pass := s.rec.passes.Add(1)
	servers := s.resolver.Servers()
	var up []Server
	for _, srv := range servers {
		if srv.Up {
			up = append(up, srv)
		}
	}
	rep.Servers, rep.Up = len(servers), len(up)
	var msgs atomic.Int64
	msgs.Add(1)
	lists, err := s.resolver.List(ctx)
	switch {
	case err != nil && errors.Is(context.Cause(ctx), errLeaseLost):
		return finish()
	case errors.Is(err, ErrRefused):
		// A server that answered LIST with an error, or with a reply
		// that says nothing of what it holds, is missing from lists, as
		// one that did not answer in time: the pass goes on with the
		// others' (failed, it repaired nothing on any server, pass
		// after pass), and keeps the tombstones that server may need.
		s.log.Warn("reconcile: a server refused LIST; the pass goes on without its list, and keeps tombstones", "error", err)
	case err != nil:
		return nil, err
	}
	onServers := map[string]int{}    // how many servers list each account
	listers := map[string][]string{} // the servers that list each account
	for name, accs := range lists {
		for _, a := range accs {
			onServers[a]++
			listers[a] = append(listers[a], name)
		}
	}
	// A server missing from the LIST replies (late, or down) may hold any
	// account: no tombstone may be taken for gone from the servers then.
	// A server known, before the LIST was sent, to answer no claims
	// request (a MEMORY or URL resolver) answers no LIST and holds nothing
	// pushed: waited for, it kept every tombstone for good, LOOKUPed by
	// every pass. One taken for such by this LIST's timeout may be a full
	// resolver slow to answer its first claims request: it keeps them. So
	// does one taken for such lately (NoResolverLong): a full resolver
	// whose claims requests wait (a stalled disk) answers pings, and was
	// taken for one with no resolver, whose missing LIST dropped every
	// tombstone past its retention while it held the account, maybe
	// live (back from an old disk), for its resolver sync to spread once
	// it answered again.
	noResolver := map[string]string{}
	// The instance each server ran when the pass began, before its LIST:
	// LIST replies are by name, and a server restarted since (from an old
	// disk, holding a deleted account live) keeps its name, so its LIST
	// says nothing of what its new instance holds.
	listedAs := map[string]string{}
	listedAll := true
	for _, srv := range servers {
		listedAs[srv.Name] = srv.ID
		if srv.NoResolver && srv.NoResolverLong {
			noResolver[srv.Name] = srv.ID
		}
		if _, ok := lists[srv.Name]; !ok && !srv.NoResolver {
			listedAll = false
		}
	}
	// Dropping a tombstone cannot be undone, and the servers known at the
	// pass's start may not include one that answers late (busy, on a slow
	// route): the first pass after a start knew only the servers that
	// answered the resolver's first ping in time, and the LIST waited for
	// those alone. A tombstone was dropped while such a server still held
	// the account, from then on only an orphan. Before the first drop the
	// pass asks every server to answer, as a rotation does, and drops
	// only if the LIST heard from every server known then.
	var dropCheck sync.Once
	mayDrop := false
	canDrop := func() bool {
		dropCheck.Do(func() {
			if err := s.resolver.Discover(ctx); err != nil {
				s.log.Warn("reconcile: could not ask every server to answer; tombstones are kept", "error", err)
				return
			}
			for _, srv := range s.resolver.Servers() {
				if srv.NoResolver && noResolver[srv.Name] == srv.ID {
					continue
				}
				if _, ok := lists[srv.Name]; !ok {
					s.log.Info("reconcile: a server did not answer LIST in time; tombstones are kept", "server", srv.Name)
					return
				}
				if listedAs[srv.Name] != srv.ID {
					// Restarted (or first heard of) since the pass began:
					// what it holds now was not listed. The next pass
					// lists it.
					s.log.Info("reconcile: a server restarted since its LIST; tombstones are kept", "server", srv.Name, "server_id", srv.ID)
					return
				}
			}
			mayDrop = true
		})
		return mayDrop
	}
	// Read before the store's accounts: an account noted after (created
	// during the pass) is missing from them, and must not be forgotten.
	remembered := s.remembered()
	accounts, err := s.store.Accounts(ctx)
	var unread *UnreadableError
	if errors.As(err, &unread) {
		// A damaged record is every instance's, and no pass mends it:
		// failing the pass for it left every other account out of line
		// until an operator repaired it.
		err = nil
	}
	if err != nil {
		if errors.Is(context.Cause(ctx), errLeaseLost) {
			return finish()
		}
		return nil, err
	}
	rep.Accounts = len(accounts)
	known := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		known[a.PublicKey] = true
	}
	s.skipUnreadable(unread, rep, known)
	for pub := range onServers {
		if !known[pub] && !s.protected(pub) {
			rep.Orphans = append(rep.Orphans, pub)
		}
	}
	sort.Strings(rep.Orphans)
	for _, pub := range rep.Orphans {
		s.log.Warn("orphan account on the servers: not managed by this service; left alone", "account", pub)
	}
	// The reply (and prov.status's last_reconcile) lists at most half of
	// what a reply may carry: with hundreds of orphans at a small
	// max_payload, prov.reconcile and every prov.status after it failed
	// 500 "its reply would be over max_payload".
	if n := s.jwtLimit() / 2 / listedKeySize; len(rep.Orphans) > n {
		rep.OrphansOmitted = len(rep.Orphans) - n
		rep.Orphans = rep.Orphans[:n:n]
	}
	// Deletes first: a returning server may bring a deleted account back.
	slices.SortStableFunc(accounts, func(a, b Account) int {
		return boolRank(a.Live()) - boolRank(b.Live())
	})

	limiter := rate.NewLimiter(rate.Limit(s.cfg.ReconcileRate), max(1, s.cfg.ReconcileRate/10))
	var mu sync.Mutex
	count := func(f func()) {
		mu.Lock()
		f()
		mu.Unlock()
	}
	eachAccount(ctx, accounts, func(a Account) {
		out := s.reconcileAccount(ctx, a, up, onServers[a.PublicKey], listers[a.PublicKey], onServers[a.PublicKey] > 0 || !listedAll, canDrop, signing, limiter, &msgs, pass)
		if out.err == nil {
			s.rec.overMax.Delete(a.PublicKey)
		}
		count(func() {
			switch {
			case out.err != nil && ctx.Err() != nil:
				// Cut off with the lease, or by the service's stop (Run's
				// context, or Close for a pass prov.reconcile started): not
				// failed.
			case out.err != nil && errors.Is(out.err, ErrOverMaxPayload):
				rep.Failed++
				// No pass delivers it: logged once (at Error) until the
				// account changes, not at Warn every pass for ever.
				if prev, ok := s.rec.overMax.Swap(a.PublicKey, a.JWT); ok && prev == a.JWT {
					s.log.Debug("reconcile: account JWT still over the servers' max_payload", "account", a.PublicKey, "name", a.Name)
					break
				}
				s.log.Error("reconcile: could not bring an account in line, and no pass will until an operator acts; logged once until the account changes", "account", a.PublicKey, "name", a.Name, "error", out.err)
			case out.err != nil:
				rep.Failed++
				s.log.Warn("reconcile: could not bring an account in line; the next pass tries again", "account", a.PublicKey, "name", a.Name, "error", out.err)
			case out.expired:
				rep.Expired++
			}
			if out.checked {
				rep.Checked++
			}
			if out.pushed {
				rep.Pushed++
			}
			if out.cacheRepushed {
				rep.CacheRepushed++
			}
			if out.deleted {
				rep.Deleted++
			}
		})
	})
	// What waits for a cache resolver is kept for accounts and servers
	// still there only, what the servers confirmed for accounts still
	// there only.
	s.confirm.keepWaits(known, remembered, s.resolver.Servers())
	// Nor are the signing keys of an account gone from the store (another
	// instance dropped its tombstone) kept for as long as the instance
	// runs.
	for pub := range remembered {
		if !known[pub] {
			s.forget(pub)
		}
	}
	rep.Messages = int(msgs.Load())
	if rep.Pushed > 0 || rep.CacheRepushed > 0 || rep.Deleted > 0 || rep.Failed > 0 || len(rep.Orphans) > 0 {
		s.log.Info("reconcile pass", "accounts", rep.Accounts, "pushed", rep.Pushed, "cache_repushed", rep.CacheRepushed, "deleted", rep.Deleted, "failed", rep.Failed, "orphans", len(rep.Orphans)+rep.OrphansOmitted, "duration", time.Since(start).Round(time.Millisecond))
	}
	return finish()
}

// skipUnreadable counts the accounts whose records the pass could not
// read (unread, nil for none) in rep, as failed, and marks them known:
// not orphans on the servers, their waits and signing keys kept. They are
// logged once until they change, since no pass mends them.
func (s *Service) skipUnreadable(unread *UnreadableError, rep *api.ReconcileReply, known map[string]bool) {
	var keys string
	if unread != nil {
		rep.Accounts += len(unread.Accounts)
		rep.Failed += len(unread.Accounts)
		for _, pub := range unread.Accounts {
			known[pub] = true
		}
		keys = strings.Join(unread.Accounts, ",")
	}
	if prev, _ := s.rec.unreadable.Swap(keys).(string); keys == "" || prev == keys {
		return
	}
	s.log.Error("reconcile: account records cannot be read; these accounts are skipped, and no pass will bring them in line until an operator puts each back whole or removes it (prov.status's damage names them); logged once until they change", "accounts", unread.Accounts, "error", unread.Err)
}

// errLeaseLost ends a pass whose reconciler lease could not be renewed.
var errLeaseLost = errors.New("reconciler lease lost")

// leaseReleaser is a Leader that can give a lease up before it runs out.
type leaseReleaser interface {
	ReleaseLease(ctx context.Context, name string) error
}

// keepLease renews the reconciler lease every reconcile interval (a third
// of its ttl) until stop is called, and cancels the pass with errLeaseLost
// once another instance holds it, or when no renewal succeeded for two
// intervals (the lease may end before the next). taken is when the
// TryLease that took the lease was called.
//
// The lease runs for its ttl from the call that took or renewed it, not
// from its answer, and a renewal may hang until the store's timeout (5 s:
// longer than an interval of 1 s) with the bucket away: a timer, not the
// renewal's answer, cuts the pass half an interval before the lease ends,
// when another instance may take it over.
func (s *Service) keepLease(ctx context.Context, cancel context.CancelCauseFunc, taken time.Time) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	lapse := func(from time.Time) time.Duration {
		return time.Until(s.leaseEnds(from))
	}
	if lapse(taken) <= 0 {
		// Paused since it took the lease (SIGSTOP, a suspended VM): the
		// pass does nothing on it.
		cancel(errLeaseLost)
	}
	cut := time.AfterFunc(lapse(taken), func() { cancel(errLeaseLost) })
	go func() {
		defer close(ended)
		defer cut.Stop()
		t := time.NewTicker(s.cfg.ReconcileInterval)
		defer t.Stop()
		renewed := taken
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			asked := time.Now()
			held, err := s.cfg.Leader.TryLease(ctx, leaseName, 3*s.cfg.ReconcileInterval)
			switch {
			case err != nil && ctx.Err() != nil:
				return // cut off by the pass's end, or by the cut
			case err == nil && held:
				renewed = asked
				s.holdLease(true, asked)
				cut.Reset(lapse(asked))
			case err == nil, time.Since(renewed) >= 2*s.cfg.ReconcileInterval:
				s.holdLease(false, time.Time{})
				cancel(errLeaseLost)
				return
			default:
				s.log.Warn("could not renew the reconciler lease; trying again", "error", err)
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// leaseEnds is when a reconciler lease taken or renewed by a TryLease
// called at from may be taken over by another instance: half an interval
// before its ttl (3 intervals) runs out.
func (s *Service) leaseEnds(from time.Time) time.Time {
	return from.Add(3*s.cfg.ReconcileInterval - s.cfg.ReconcileInterval/2)
}

// holdLease notes the answer of a TryLease called at from: the lease held
// until leaseEnds(from), or not held.
func (s *Service) holdLease(held bool, from time.Time) {
	if !held {
		s.rec.leaderUntil.Store(0)
		return
	}
	s.rec.leaderUntil.Store(s.leaseEnds(from).UnixNano())
}

// leader reports whether this instance reconciles now (prov.status's
// role): without a Leader it is the only one; with one, while the lease it
// took has not run out.
func (s *Service) leader() bool {
	return s.cfg.Leader == nil || time.Now().UnixNano() < s.rec.leaderUntil.Load()
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// accountOutcome is what a pass did for one account.
type accountOutcome struct {
	checked, pushed, deleted, expired bool
	// cacheRepushed: pushed again only for a cache resolver that lists
	// the account and has not taken its current version.
	cacheRepushed bool
	err           error
}

// reconcileAccount brings one account in line. onLists is how many
// servers' LISTs named it, listers their names; listed says a server may hold it (it is on a
// LIST, or a server did not answer the pass's LIST). A tombstone not listed
// is dropped past its retention only if mayDrop says every server answered
// the pass's LIST. pass numbers the pass (see confirmations.staleCache).
func (s *Service) reconcileAccount(ctx context.Context, a Account, up []Server, onLists int, listers []string, listed bool, mayDrop func() bool, signing passSigning, limiter *rate.Limiter, msgs *atomic.Int64, pass uint64) (out accountOutcome) {
	if a.Live() && s.isAbandoned(a.PublicKey) {
		// A failed create not taken back yet: pushed, it would be live.
		return out
	}
	if !a.Live() {
		// A tombstone signed with the old operator signing key is
		// signed anew like a live account: left so, its disabled version
		// stays on the servers that keep it (allow_delete off, or a
		// server that missed the DELETE) signed with the old key, which
		// stops the rotation's finish, and once the old key is removed
		// no server takes a push of it. One whose disabled version was
		// made before disable turned JetStream and imports off is signed
		// anew without them: its streams went on answering its
		// importers, and its imports forwarded their requests. One
		// signed when the JWT limit was larger (max_payload went down
		// on the servers) is signed anew slimmed: pushed as it was, it
		// was refused "maximum payload exceeded" at every pass, and a
		// delete waiting for servers never finished.
		if c, err := decodeAccount(a.JWT); err == nil && signing.ok && (signing.resign(c.Issuer) || stillServes(c) || len(a.JWT) > s.jwtLimit()) {
			if err := s.resignStored(ctx, a); err != nil {
				out.err = err
				return out
			}
			cur, err := s.account(ctx, a.PublicKey, true)
			if errors.Is(err, ErrNotFound) {
				return out // dropped meanwhile
			} else if err != nil {
				out.err = err
				return out
			}
			a = cur
		}
	}
	id := jti(a.JWT)
	if a.Phase == PhaseDeleted {
		if listed {
			// Brought back by a server that missed the delete, or (where
			// servers do not allow deletes) the disabled version kept as
			// the end state: push again only what differs from it, and
			// send the DELETE again where servers allow it.
			copies, err := s.lookupPaced(ctx, a.PublicKey, limiter, msgs)
			if err != nil {
				out.err = err
				return out
			}
			out.checked = true
			if slices.ContainsFunc(copies, func(c string) bool { return c != "" && c != a.JWT }) {
				out.pushed, out.deleted, out.err = s.repush(ctx, a.PublicKey, msgs, nil)
				return out
			}
			held := 0
			for _, c := range copies {
				if c != "" {
					held++
				}
			}
			if held < onLists {
				// More servers list it than LOOKUP answers hold it: a
				// cache resolver (a leaf or edge server), which answers
				// no LOOKUP, down during the delete and back with the
				// live version in its cache, where the deleted
				// account's users got in for as long as the cache kept
				// it (where servers do not allow deletes, the one
				// DELETE a pass sends as a probe went to another
				// tombstone). The disabled version and the DELETE reach
				// it as they reach every server.
				//
				// A full resolver that lists it and whose LOOKUP answer
				// is missing gets it at once, as before. A cache
				// resolver's push follows its backoff (staleCache), and
				// is pushed no more once it took this version: where
				// servers do not allow deletes, a cache resolver fetches
				// the disabled version again (the one the full
				// resolvers keep) each time a client of the deleted
				// account reconnects there, after the DELETE took it
				// from its cache, and lists it again. Pushed for that,
				// every pass pushed the account and sent a DELETE, past
				// the one probe DELETE a pass sends, counted as pushed.
				cup := s.withCache(up)
				fullListers := 0
				for _, srv := range cup {
					if !srv.Cache && slices.Contains(listers, srv.Name) {
						fullListers++
					}
				}
				note := func(id string, res PushResult) {
					s.confirm.cacheSkipped(a.PublicKey, id, res, s.withCache(cup), listers, pass)
				}
				if held < fullListers {
					out.pushed, out.deleted, out.err = s.repush(ctx, a.PublicKey, msgs, note)
					return out
				}
				if s.confirm.staleCache(a.PublicKey, id, cup, listers, pass) {
					if err := limiter.Wait(ctx); err != nil {
						out.err = err
						return out
					}
					out.cacheRepushed, out.deleted, out.err = s.repush(ctx, a.PublicKey, msgs, note)
					return out
				}
			}
			if !slices.Contains(copies, a.JWT) || s.deletesOff.Load() && !s.deletesProbe.CompareAndSwap(true, false) {
				return out
			}
			// A server holds the disabled version although the delete
			// finished: it missed the DELETE (away past
			// server_forget_after, or its answer lost). Left there,
			// its resolver sync spreads the account back to every
			// server, and the tombstone, listed for good, is never
			// dropped: send the DELETE again while the tombstone is
			// kept.
			msgs.Add(1)
			_, err = s.deleteFromResolver(ctx, a.PublicKey)
			if err != nil && !deletesRefused(err) {
				out.err = err
				return out
			}
			// A DELETE the servers refused (allow_delete off) deleted
			// nothing: counted, the pass reported deletes that never
			// happened.
			out.deleted = err == nil
			return out
		}
		if time.Since(time.Unix(a.DeletedAt, 0)) > s.cfg.TombstoneRetention && mayDrop() {
			err := s.store.RemoveAccount(ctx, a.PublicKey, a.Revision)
			switch {
			case err == nil, errors.Is(err, ErrNotFound):
				// Gone from the store: what the servers confirmed of it
				// (a pass's push of its disabled version, a cache
				// resolver's copy) is forgotten too, not kept for as
				// long as the instance runs.
				s.confirm.drop(a.PublicKey)
			case !errors.Is(err, ErrStale):
				out.err = err
			}
		}
		return out
	}
	if a.Live() {
		c, err := decodeAccount(a.JWT)
		// An expired account gets no new version but a re-sign with the
		// operator signing key in use (keeping its expiry: `operator
		// finish` waits for every account to be on the new key), and is
		// still checked: a server restored from an old disk may hold a
		// version without the expiry, which its users can still connect
		// with.
		out.expired = err == nil && c.Expires != 0 && c.Expires <= time.Now().Unix()
		resign := err == nil && signing.resign(c.Issuer)
		if err == nil && (resign || !out.expired && signing.ok && len(s.prunable(ctx, a.PublicKey, c)) > 0) {
			// A new version: the change path prunes, and signs with the
			// operator signing key in use (after a rotation, an instance
			// that had not switched yet may have signed with the old one).
			if err := s.submitResign(ctx, a.PublicKey); errors.Is(err, errAbandoned) {
				return out
			} else if err != nil {
				out.err = err
				return out
			}
			msgs.Add(1)
			out.pushed = true
			return out
		}
	}
	// A refused role change whose put-back was never stored (its instance
	// killed between the two writes, or its put-back lost to another
	// instance's version and killed before revoking) stands in the store
	// with the user it was refused for active: its users are checked
	// against it here, and those that do not fit it revoked, in a version
	// pushed below.
	revoked := false
	if a.Live() && !out.expired && signing.ok {
		if fixed, ok := s.revokeStandingMisfits(ctx, a); ok {
			a, id, revoked = fixed, jti(fixed.JWT), true
		}
	}
	// Which servers run a cache resolver as the client knows it now: a
	// push earlier in this pass may have told it (a server counts as a
	// full resolver until its answer to a push says otherwise). Taken from
	// the list of the pass's start, a cache resolver that restarted (or
	// one not heard from since the service started) made the pass push
	// every account again.
	up = s.withCache(up)
	needPush := revoked || s.confirm.known(a.PublicKey) && len(s.confirm.missing(a.PublicKey, id, up)) > 0
	// A cache resolver (a leaf or edge server) that lists the account but
	// has not taken this version: its copy, kept across a restart, may
	// lack a revocation. It answers no LOOKUP, and takes a push only
	// while the account is loaded there. So too a disabled version, whose
	// DELETE waits for a full server that is down (up to
	// server_forget_after): the copy there may be the live one, which a
	// user of the deleted account loads and gets in by until the DELETE
	// goes out. It skips the push of every account not loaded there, for
	// good: pushed again each pass, every account it listed after a
	// restart went to every server each pass. Such a push backs off, goes
	// at the pass's rate, and leaves the full resolvers' LOOKUP to be
	// done.
	cacheDue := a.Phase != PhaseDeleted && s.confirm.staleCache(a.PublicKey, id, up, listers, pass)
	var noteCache func(id string, res PushResult)
	if a.Phase != PhaseDeleted {
		// Any push of the pass counts: the first may be what tells a
		// restarted cache resolver for one (staleCache did not know).
		noteCache = func(id string, res PushResult) {
			s.confirm.cacheSkipped(a.PublicKey, id, res, s.withCache(up), listers, pass)
		}
	}
	if !needPush {
		copies, err := s.lookupPaced(ctx, a.PublicKey, limiter, msgs)
		if err != nil {
			out.err = err
			return out
		}
		out.checked = true
		// Only full resolvers answer a LOOKUP, and only those up: the
		// LOOKUP does not wait for a server that went down during the
		// pass (or the LOOKUP). Counted, its missing answer made the
		// pass push every account again, to servers that hold it.
		up = s.withCache(up)
		full := 0
		for _, srv := range up {
			if !srv.Cache {
				full++
			}
		}
		same := len(copies) >= full
		// A disabled account is wanted gone from the servers that carried
		// out its DELETE while the delete waits for one that is down: ""
		// from as many servers as did is no copy that differs. Taken for
		// one, every pass pushed the disabled version to them again and
		// sent the DELETE again until server_forget_after.
		blank, gone := 0, 0
		if a.Phase == PhaseDisabled {
			gone = full - len(s.confirm.notDeleted(a.PublicKey, id, up))
		}
		for _, c := range copies {
			switch {
			case c == a.JWT:
			case c == "" && blank < gone:
				blank++
			case c == "" && out.expired:
				// A full resolver removes an account JWT from its store
				// once its exp has passed (it checks once a minute), and
				// answers its LOOKUP empty: nothing its users could
				// connect with. Taken for a copy that differs, every pass
				// pushed the expired version again, for the server to
				// drop it again. A server holding an older version
				// without the expiry still gets the stored one.
			default:
				same = false
			}
		}
		switch {
		case !same:
			needPush = true
		case a.Phase == PhaseDisabled && len(s.confirm.missing(a.PublicKey, id, up)) > 0:
			// LOOKUP replies do not say which server sent them: one
			// from a server that joined during the pass can stand for
			// one that did not answer. The DELETE waits for servers
			// that confirmed by name, as a push's answers do: sent to a
			// server that holds the live version and misses it, resolver
			// sync spreads that version back to the servers that
			// deleted the account.
			needPush = true
		case blank == 0:
			s.confirm.set(a.PublicKey, id, up)
		}
	}
	if needPush {
		out.pushed, out.deleted, out.err = s.repush(ctx, a.PublicKey, msgs, noteCache)
		return out
	}
	if cacheDue {
		// Paced like the LOOKUPs: after a cache resolver's restart, up
		// to its cache's limit of accounts are due at once.
		if err := limiter.Wait(ctx); err != nil {
			out.err = err
			return out
		}
		out.cacheRepushed, out.deleted, out.err = s.repush(ctx, a.PublicKey, msgs, noteCache)
		return out
	}
	if a.Phase == PhaseDisabled {
		// Every server holds the disabled version: send the DELETE.
		unlock := s.locks.lock("account:" + a.PublicKey)
		defer unlock()
		cur, err := s.account(ctx, a.PublicKey, true)
		if err != nil || cur.Phase != PhaseDisabled {
			out.err = err
			return out
		}
		msgs.Add(1)
		phase, _ := s.finishDelete(ctx, cur)
		out.deleted = phase == PhaseDeleted
	}
	return out
}

// revokeStandingMisfits revokes the active users of a live account's
// roles that do not fit the version the store holds (misfitsOf), on a
// store shared by instances, in a new version stored on top of it, and
// returns that version (ok false when none was stored). Each user was
// checked when issued, and each change against the role's users, so such
// a user is one another instance issued while a change stood that was
// refused, and whose put-back did not make it to the store: its instance
// killed between the change's write and the put-back's, or between a
// put-back that lost to another instance's version and the revocations
// restore then stores. Left so, any reconciler pushed the refused version
// and the user had the subjects the change was refused for (a user tagged
// "site:*" under "telemetry.{{tag(site)}}.>"). Only accounts whose
// templates put a user's name or tags into subjects are checked, against
// the store's reads of users (kvstore's mirror, no bucket read), and only
// once the version is older than misfitsSettle, or its misfits have
// stood that long as this instance's passes saw them: a younger change
// may still be checked by its instance (usersAgain) and put back, which a
// revocation stored first would make stand, with the user revoked.
func (s *Service) revokeStandingMisfits(ctx context.Context, a Account) (Account, bool) {
	if _, shared := s.store.(usersFollower); !shared {
		return a, false
	}
	c, err := decodeAccount(a.JWT)
	if err != nil || !templatesTakeUsers(c) {
		s.misfitsSeen.Delete(a.PublicKey)
		return a, false
	}
	users, err := s.store.Users(ctx, a.PublicKey)
	if err != nil {
		return a, false // the next pass checks again
	}
	if len(s.misfitsOf(a, c, users)) == 0 {
		s.misfitsSeen.Delete(a.PublicKey)
		return a, false
	}
	// Settled: the version is older than misfitsSettle, or the misfits
	// have stood that long on this instance's clock under the same
	// templates. The version's age alone was never reached on an account
	// changed more often than that (a revoke, a description, a prune's
	// re-sign: each a version on top of the refused change with the same
	// templates), and its misfits stood for good.
	since := s.misfitsSince(a.PublicKey, c)
	settled := func(c *jwt.AccountClaims) bool {
		return time.Since(time.Unix(c.IssuedAt, 0)) >= s.misfitsSettle || time.Since(since) >= s.misfitsSettle
	}
	if !settled(c) {
		return a, false
	}
	defer s.locks.lock("account:" + a.PublicKey)()
	cur, err := s.account(ctx, a.PublicKey, true)
	if err != nil || !cur.Live() {
		return a, false
	}
	if cc, err := decodeAccount(cur.JWT); err != nil || !templatesTakeUsers(cc) || templatesOf(cc) != templatesOf(c) || !settled(cc) {
		return a, false
	}
	log := s.log.With("account", cur.PublicKey, "name", cur.Name)
	fixed, ok := s.revokeMisfits(ctx, cur, "a change of its role stands that it does not fit (refused, and its instance stopped before the put-back, or the revocations after it, were stored)", log, nil)
	if ok {
		s.cache.Delete(cur.PublicKey)
		s.misfitsSeen.Delete(cur.PublicKey)
	}
	return fixed, ok
}

// misfitSeen is when a pass first found misfits of an account, and under
// which templates (templatesOf).
type misfitSeen struct {
	at        time.Time
	templates string
}

// misfitsSince returns when a pass of this instance first found users of
// account pub that the templates of c do not fit, noting now when it is
// the first time, or the templates changed since (a put-back, or another
// change of a role: a new refused change is given the whole settle
// again, for its own put-back).
func (s *Service) misfitsSince(pub string, c *jwt.AccountClaims) time.Time {
	t := templatesOf(c)
	if v, ok := s.misfitsSeen.Load(pub); ok && v.(misfitSeen).templates == t {
		return v.(misfitSeen).at
	}
	now := time.Now()
	s.misfitsSeen.Store(pub, misfitSeen{at: now, templates: t})
	return now
}

// templatesOf is the role templates of c as text, to tell whether two
// versions have the same.
func templatesOf(c *jwt.AccountClaims) string {
	b, _ := json.Marshal(c.SigningKeys)
	return string(b)
}

// templatesTakeUsers tells whether a role template of c puts a user's
// name or tags into subjects ({{name()}}, {{tag(x)}}), read as the server
// reads them: only there can a user's name or tags widen its subjects.
// So too a template that gives bearer_token: a self-service user's JWT,
// which travelled on the tenant's inbox, then connects without its seed
// (misfitsOf), and a refused change to one stands as the others do.
func templatesTakeUsers(c *jwt.AccountClaims) bool {
	for _, sk := range c.SigningKeys {
		us, ok := sk.(*jwt.UserScope)
		if !ok || us == nil {
			continue
		}
		if us.Template.BearerToken {
			return true
		}
		p := us.Template.Permissions
		for _, list := range []jwt.StringList{p.Pub.Allow, p.Pub.Deny, p.Sub.Allow, p.Sub.Deny} {
			for _, subj := range list {
				for _, m := range mustache.FindAllStringSubmatch(subj, -1) {
					op := strings.ToLower(strings.TrimSpace(m[1]))
					if op == "name()" || strings.HasPrefix(op, "tag(") {
						return true
					}
				}
			}
		}
	}
	return false
}

// withCache returns the servers of up that are still up, each with its
// Cache as the resolver knows it now, for the same server instance. A
// server that went down (or was forgotten) since the pass began is left
// out: no request waits for it.
func (s *Service) withCache(up []Server) []Server {
	now := s.resolver.Servers()
	out := make([]Server, 0, len(up))
	for _, srv := range up {
		j := slices.IndexFunc(now, func(n Server) bool { return n.Name == srv.Name })
		if j < 0 || !now[j].Up {
			continue
		}
		if now[j].ID == srv.ID {
			srv.Cache = now[j].Cache
		}
		out = append(out, srv)
	}
	return out
}

// repush pushes the store's current version of an account again, under
// the account's lock, and moves a delete on. It never pushes a version
// older than one a server may hold: versions only move forward in the
// store, and it pushes the latest. note, if not nil, is given the version
// pushed and the servers' answers.
func (s *Service) repush(ctx context.Context, pub string, msgs *atomic.Int64, note func(id string, res PushResult)) (pushed, deleted bool, err error) {
	defer s.locks.lock("account:" + pub)()
	a, err := s.account(ctx, pub, true)
	if errors.Is(err, ErrNotFound) {
		return false, false, nil // forgotten meanwhile
	}
	if err != nil {
		return false, false, err
	}
	if a.Live() && s.isAbandoned(pub) {
		// A create whose push failed while this pass waited for its lock,
		// and whose take-back failed: pushed, it would be live, and the
		// take-back (which may take it for one no server holds) would
		// leave it so.
		return false, false, nil
	}
	msgs.Add(1)
	var res PushResult
	if a.Live() {
		res, err = s.resolver.Update(ctx, a.JWT)
		s.confirm.record(pub, jti(a.JWT), res)
	} else {
		res, err = s.pushDisabled(ctx, pub, a.JWT)
	}
	if note != nil {
		note(jti(a.JWT), res)
	}
	if err != nil {
		return false, false, err
	}
	s.afterPush(ctx, pub, a.JWT)
	switch a.Phase {
	case PhaseDisabled:
		msgs.Add(1)
		phase, _ := s.finishDelete(ctx, a)
		deleted = phase == PhaseDeleted
	case PhaseDeleted:
		msgs.Add(1)
		_, err := s.deleteFromResolver(ctx, pub)
		if err != nil && !deletesRefused(err) {
			// Refused for another reason (a server's disk) by a
			// server that allows deletes: it still holds the
			// account. Swallowed with the refusals of servers that
			// do not allow deletes, the pass counted nothing failed.
			return true, false, err
		}
		// A DELETE refused because deletes are off deleted nothing.
		deleted = err == nil
	}
	return true, deleted, nil
}

// lookupPaced asks every server for its copy of an account, at the pass's
// rate, and counts the message.
func (s *Service) lookupPaced(ctx context.Context, pub string, limiter *rate.Limiter, msgs *atomic.Int64) ([]string, error) {
	if err := limiter.Wait(ctx); err != nil {
		return nil, err
	}
	msgs.Add(1)
	return s.resolver.LookupAll(ctx, pub)
}

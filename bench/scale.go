package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/natsprov/provisioner/api"
)

// scaleSmall is the size the scale mode compares Options.Accounts with.
const scaleSmall = 1000

// scaleRepeats is how often each scale measurement is taken; the median
// counts.
const scaleRepeats = 3

// scale fills the store to 1,000 and then to o.Accounts accounts and
// measures each operation's cost at both sizes, one reconcile pass at the
// large size, and the memory then.
func scale(ctx context.Context, e *Env, o Options, rep *Report) error {
	large := o.Accounts
	// live returns the public keys of the live accounts: the sizes count
	// those, not the tombstones the deletes left.
	live := func() ([]string, error) {
		all, err := e.Service.Store.Accounts(ctx)
		if err != nil {
			return nil, err
		}
		var pubs []string
		for _, a := range all {
			if a.Live() {
				pubs = append(pubs, a.PublicKey)
			}
		}
		return pubs, nil
	}
	fill := func(to int) error {
		accts, err := live()
		if err != nil {
			return err
		}
		have := len(accts)
		if have >= to {
			return nil
		}
		if o.Progress != nil {
			o.Progress(fmt.Sprintf("scale mode: filling the store from %d to %d accounts", have, to))
		}
		start := time.Now()
		s := run(ctx, to-have, o.C*2, func(i int) error {
			_, err := request(e.Admin, e.Prefix+".account.create", fmt.Appendf(nil, `{"name":"fill-%d-%d"}`, to, i))
			return err
		})
		rep.ScaleElapsed += time.Since(start)
		if s.firstErr != nil {
			return fmt.Errorf("bench: fill to %d accounts: %w", to, s.firstErr)
		}
		return nil
	}
	samples := max(200, o.N/2)
	// measure returns the costs and the live accounts they were measured
	// at: the small size's creates can take the store past a large size
	// close to it, which then gets no fill.
	measure := func(size int) (map[string]time.Duration, int, error) {
		accts, err := live()
		if err != nil {
			return nil, 0, err
		}
		costs := map[string]time.Duration{}
		var firstErr error
		// cost measures an operation scaleRepeats times and keeps the
		// median of its costs: one measurement lasts a fraction of a
		// second, and a pause of the machine would otherwise decide it.
		// The cost of an operation is the time the service spends per
		// operation at full concurrency.
		cost := func(n, c int, op func(rep, i int) error) time.Duration {
			var all []time.Duration
			for rep := range scaleRepeats {
				s := run(ctx, n, c, func(i int) error { return op(rep, i) })
				if firstErr == nil && s.firstErr != nil {
					firstErr = s.firstErr
				}
				all = append(all, s.elapsed/time.Duration(max(1, len(s.lat))))
			}
			slices.Sort(all)
			return all[len(all)/2]
		}
		pick := func(rep, i int) string { return accts[(rep*samples+i)*7919%len(accts)] }
		costs["account.get"] = cost(samples, o.C, func(rep, i int) error {
			_, err := request(e.Admin, e.Prefix+".account.get", fmt.Appendf(nil, `{"account":%q}`, pick(rep, i)))
			return err
		})
		costs["account.update"] = cost(samples, o.C, func(rep, i int) error {
			// A value no earlier update gave: an update to what the
			// account already has makes no version, and is no measure.
			_, err := request(e.Admin, e.Prefix+".account.update", fmt.Appendf(nil, `{"account":%q,"limits":{"conn":%d}}`, pick(rep, i), 1+(size+rep)*samples+i))
			return err
		})
		costs["user.create"] = cost(samples, o.C, func(rep, i int) error {
			_, err := request(e.Admin, e.Prefix+".user.create", fmt.Appendf(nil, `{"account":%q,"name":"s%d-%d-%d"}`, pick(rep, i), size, rep, i))
			return err
		})
		costs["account.list"] = cost(max(20, samples/10), min(o.C, 2), func(int, int) error {
			_, err := request(e.Admin, e.Prefix+".account.list", nil)
			return err
		})
		// account.create last: each of its measurements adds samples
		// accounts (3,000 with the default N), and the operations above
		// measured after it ran at that many more accounts than the size
		// the report names.
		costs["account.create"] = cost(samples, o.C, func(rep, i int) error {
			_, err := request(e.Admin, e.Prefix+".account.create", fmt.Appendf(nil, `{"name":"scale-%d-%d-%d"}`, size, rep, i))
			return err
		})
		return costs, len(accts), firstErr
	}
	if err := fill(scaleSmall); err != nil {
		return err
	}
	runtime.GC()
	at1, small, err := measure(scaleSmall)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := fill(large); err != nil {
		return err
	}
	accts, err := live()
	if err != nil {
		return err
	}
	if rep.Reconcile, err = reconcile(ctx, e); err != nil {
		return err
	}
	rep.Reconcile.Live = len(accts)
	// The memory at the large size, before its measurements add accounts.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapBytes = ms.HeapInuse
	rep.RSSBytes = rss("self")
	rep.ServerRSS = e.serverRSS()
	rep.RSSLimit = RSSLimit
	rep.RSSPass = pass(rep.RSSBytes > 0 && rep.RSSBytes < rep.RSSLimit)
	runtime.GC()
	atN, large, err := measure(large)
	if err != nil {
		return err
	}
	rep.SmallSize, rep.LargeSize = small, large
	for _, name := range []string{"account.create", "account.get", "account.update", "user.create", "account.list"} {
		r := ScaleResult{Name: name, Small: at1[name], Large: atN[name], Ratio: ratio(float64(atN[name]), float64(at1[name]))}
		if name == "account.list" {
			r.Growth = "linear allowed"
		} else {
			r.Limit = ScaleLimit
			r.Pass = pass(r.Ratio <= r.Limit)
		}
		rep.Scale = append(rep.Scale, r)
	}
	return nil
}

// reconcile runs one reconcile pass through the domain and waits for it,
// as prov.reconcile does for most of its request_timeout (the result says
// whether the pass took longer). Everything is in line when
// it pushed nothing, failed nowhere and found no orphan; finishing a
// delete begun earlier is not drift.
func reconcile(ctx context.Context, e *Env) (*ReconcileResult, error) {
	start := time.Now()
	reply, err := e.Service.Provision.Reconcile(ctx, api.ReconcileRequest{})
	if err != nil {
		return nil, fmt.Errorf("bench: reconcile pass: %w", err)
	}
	r := &ReconcileResult{Reply: *reply, Elapsed: time.Since(start), RequestTimeout: e.RequestTimeout}
	r.InLine = pass(reply.Pushed == 0 && reply.Failed == 0 && len(reply.Orphans) == 0 && reply.Skipped == "")
	return r, nil
}

package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

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

// loadAverage returns the 1, 5 and 15 minute load averages ("" where
// unknown): other work on the machine moves the numbers.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Print writes the report as tables.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s\nstore: %s; server: %s\nn=%d c=%d c_high=%d rounds=%d (%s); load average %s at the start, %s at the end\n\n",
		r.Machine, r.Store, r.Server, r.N, r.C, r.CHigh, r.Rounds, r.Elapsed.Round(time.Second), r.LoadStart, r.LoadEnd)
	if r.Storage != "" {
		fmt.Fprintf(w, "WARNING: the deployment is on %s: the file store's fdatasync and the servers' sync_interval always reach no disk there and cost nothing; these are not the durable settings' numbers (give --dir on a disk)\n\n", r.Storage)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tops/s\tp50\tp99\tvs floor\ttarget\t")
	for _, x := range r.Results {
		vs, target := "", ""
		if x.Floor != "" {
			vs = ratioString(x.Ratio)
		}
		if x.Pass != nil {
			target = fmt.Sprintf(">= %.1f %s", x.Target, verdict(x.Pass))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t\n", x.Name, x.PerSecond, round(x.P50), round(x.P99), vs, target)
	}
	tw.Flush()

	var notes []string
	for _, x := range r.Results {
		if x.Versions > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d operations made %d versions (%.1f per version, %.1f versions/s)",
				x.Name, x.Ops, x.Versions, float64(x.Ops)/float64(x.Versions), x.PerSecond*float64(x.Versions)/float64(x.Ops)))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\none account: the service combines the changes that arrive while a version waits for its second\n")
		for _, n := range notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
	first := true
	for _, x := range r.Results {
		if x.JWTBytes > 0 {
			if first {
				fmt.Fprintf(w, "\nlargest account JWT pushed\n")
				first = false
			}
			fmt.Fprintf(w, "  %s: %d bytes\n", x.Name, x.JWTBytes)
		}
	}

	if len(r.Results) > 0 && r.Results[0].CPUPerOp > 0 {
		if r.External {
			servers := "the nats-server process"
			if r.Servers > 1 {
				servers = fmt.Sprintf("the %d nats-server processes together", r.Servers)
			}
			fmt.Fprintf(w, "\nCPU per operation (one-account rows left out: they wait): this process (service, floors, bench clients) and %s\n", servers)
		} else {
			fmt.Fprintf(w, "\nCPU per operation (one-account rows left out: they wait): this process (service, floors, bench clients and the embedded nats-server)\n")
		}
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		if r.External {
			fmt.Fprintln(tw, "operation\tthis process\tnats-server\ttotal\t")
		} else {
			fmt.Fprintln(tw, "operation\tCPU/op\t")
		}
		for _, x := range r.Results {
			if x.Versions > 0 {
				// These wait for the next second: their CPU is mostly
				// what else ran meanwhile (reconcile passes, key pools).
				continue
			}
			if r.External {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", x.Name, round(x.CPUPerOp), round(x.ServerCPUPerOp), round(x.CPUPerOp+x.ServerCPUPerOp))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t\n", x.Name, round(x.CPUPerOp))
			}
		}
		tw.Flush()
	}

	if len(r.Scale) > 0 {
		fmt.Fprintf(w, "\nscale: cost per operation at c=%d\n", r.C)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "operation\tat %d\tat %d\tratio\ttarget\t\n", r.SmallSize, r.LargeSize)
		for _, s := range r.Scale {
			target := s.Growth
			if s.Limit > 0 {
				target = fmt.Sprintf("<= %.1f %s", s.Limit, verdict(s.Pass))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", s.Name, round(s.Small), round(s.Large), limitString(s.Ratio), target)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nfill to %d accounts took %s\n", r.LargeSize, r.ScaleElapsed.Round(time.Second))
	}
	if rc := r.Reconcile; rc != nil {
		rp := rc.Reply
		fmt.Fprintf(w, "reconcile pass at %d live accounts (%d in the store with tombstones): %s by its reply (%s timed here), %d messages to the servers; checked %d, pushed %d, deleted %d, failed %d, orphans %d: in line %s\n",
			rc.Live, rp.Accounts, rp.Duration, round(rc.Elapsed), rp.Messages, rp.Checked, rp.Pushed, rp.Deleted, rp.Failed, len(rp.Orphans)+rp.OrphansOmitted, verdict(rc.InLine))
		if rc.RequestTimeout > 0 && rc.Elapsed > rc.RequestTimeout {
			fmt.Fprintf(w, "  the pass took longer than request_timeout (%s): prov.reconcile's reply would say it is running, and prov.status report it when done\n", rc.RequestTimeout)
		}
	}
	if r.RSSLimit > 0 {
		what := "whole process: service, embedded nats-server and bench clients"
		if r.External {
			servers := "the nats-server process"
			if r.Servers > 1 {
				servers = fmt.Sprintf("the %d nats-server processes together", r.Servers)
			}
			what = fmt.Sprintf("this process: service and bench clients; %s: %.1f MiB", servers, float64(r.ServerRSS)/(1<<20))
		}
		fmt.Fprintf(w, "resident memory at %d accounts: %.1f MiB (%s; Go heap in use %.1f MiB); target < %d MiB %s\n",
			r.LargeSize, float64(r.RSSBytes)/(1<<20), what, float64(r.HeapBytes)/(1<<20), r.RSSLimit>>20, verdict(r.RSSPass))
	}
}

// ratioString prints a ratio cut (not rounded) to two decimals, three
// below 0.1: rounded, a ratio just under its target (0.796) printed as the
// target (0.80) next to FAIL, and read as a pass wherever it was copied
// without its verdict.
func ratioString(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.3f", math.Floor(r*1000+1e-9)/1000)
	}
	return fmt.Sprintf("%.2f", math.Floor(r*100+1e-9)/100)
}

// limitString prints a ratio held to an upper limit (the scale mode's
// growth) raised, not rounded, to two decimals: rounded, a growth just
// over its limit (1.3004) printed as the limit (1.30) next to FAIL, the
// mirror of ratioString's case.
func limitString(r float64) string {
	return fmt.Sprintf("%.2f", math.Ceil(r*100-1e-9)/100)
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
	if r.Reconcile != nil && r.Reconcile.InLine != nil && !*r.Reconcile.InLine {
		return true
	}
	return r.RSSPass != nil && !*r.RSSPass
}

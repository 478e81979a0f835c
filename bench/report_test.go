package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// A ratio just under its target does not print as the target.
func TestPrintDoesNotRoundAMissUpToTheTarget(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		want  string
	}{{0.7996, "0.79"}, {0.8, "0.80"}, {0.8049, "0.80"}, {1.239, "1.23"}, {0.0996, "0.099"}, {0.29, "0.29"}, {0.57, "0.57"}} {
		if got := ratioString(tc.ratio); got != tc.want {
			t.Errorf("ratioString(%v) = %q, want %q", tc.ratio, got, tc.want)
		}
	}
	r := &Report{Results: []Result{
		{Name: "floor", PerSecond: 1000},
		{Name: "svc", PerSecond: 799.6, Floor: "floor", Ratio: 0.7996, Target: TargetCreate, Pass: pass(0.7996 >= TargetCreate)},
	}}
	var b bytes.Buffer
	r.Print(&b)
	if out := b.String(); strings.Contains(out, "0.80") || !strings.Contains(out, "0.79  >= 0.8 FAIL") {
		t.Fatalf("a ratio of 0.7996 against 0.8 printed as:\n%s", out)
	}
}

// A scale ratio just over its limit does not print as the limit: rounded,
// a growth of 1.3004 against "<= 1.3" printed as 1.30 next to FAIL, and
// read as within the limit wherever it was copied without its verdict.
func TestPrintDoesNotRoundAScaleMissDownToTheLimit(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		want  string
	}{{1.3004, "1.31"}, {1.3, "1.30"}, {1.2999, "1.30"}, {0.67, "0.67"}, {1.11, "1.11"}} {
		if got := limitString(tc.ratio); got != tc.want {
			t.Errorf("limitString(%v) = %q, want %q", tc.ratio, got, tc.want)
		}
	}
	r := &Report{SmallSize: 1000, LargeSize: 10000, Scale: []ScaleResult{
		{Name: "account.get", Small: 100 * time.Microsecond, Large: 130040 * time.Nanosecond, Ratio: 1.3004, Limit: ScaleLimit, Pass: pass(1.3004 <= ScaleLimit)},
	}}
	var b bytes.Buffer
	r.Print(&b)
	if out := b.String(); strings.Contains(out, "1.30") || !strings.Contains(out, "1.31  <= 1.3 FAIL") {
		t.Fatalf("a scale ratio of 1.3004 against 1.3 printed as:\n%s", out)
	}
}

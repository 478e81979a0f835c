package bench

import (
	"bytes"
	"strings"
	"testing"
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

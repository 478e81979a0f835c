package bench

import (
	"context"
	"regexp"
	"strings"
	"testing"
)

// The account.delete row names the concurrency it ran at: with fewer
// accounts to delete than -c requesters, it ran at one requester per
// account but was labelled (and its c in --json set) at -c.
func TestDeleteRowNamesTheConcurrencyItRanAt(t *testing.T) {
	o := Options{Dir: t.TempDir(), Store: StoreFile, N: 3, C: 8, CHigh: 8, Rounds: 1, Revocations: 1, Versions: 1,
		Only: regexp.MustCompile(`^account\.(create|delete) via service`)}
	ctx := context.Background()
	e, err := Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	rep, err := Run(ctx, e, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if !strings.HasPrefix(r.Name, "account.delete") {
			continue
		}
		if r.Ops != 3 || r.C != 3 || !strings.HasSuffix(r.Name, " c=3") {
			t.Fatalf("%q: %d deletes reported at c=%d; they ran at 3 requesters", r.Name, r.Ops, r.C)
		}
		return
	}
	t.Fatalf("no account.delete row: %+v", rep.Results)
}

package bench

import (
	"context"
	"fmt"
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

// Every row names the concurrency it ran at: a row of fewer operations per
// round than requesters (account.create at --c-high with a small -n, the
// JetStream write floor's batches: one per 32 writes) ran at one requester
// per operation, but was labelled, and its c in --json set, at -c or
// --c-high.
func TestRowsNameTheConcurrencyTheyRanAt(t *testing.T) {
	o := Options{Dir: t.TempDir(), Store: StoreJetStream, N: 40, C: 8, CHigh: 32, Rounds: 2, Revocations: 1, Versions: 1,
		Only: regexp.MustCompile(`^(account\.|user\.create|JetStream)`)}
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
		if perRound := r.Ops / o.Rounds; r.C > perRound || !strings.HasSuffix(r.Name, fmt.Sprintf(" c=%d", r.C)) {
			t.Errorf("%q: c=%d, %d operations a round", r.Name, r.C, perRound)
		}
	}
}

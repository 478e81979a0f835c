package provision_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestPassSkipsAnUnreadableRecord: while one account's record in the KV
// store could not be read (damaged by hand), every reconcile pass failed
// as a whole, on every instance, and no other account was brought in line
// with the servers until an operator repaired it. A pass skips that
// account, counted as failed and not taken for an orphan on the servers,
// and checks the others; the log names it once, not at every pass.
func TestPassSkipsAnUnreadableRecord(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	logs := &lockedBuf{}
	svc, st := kvDomainOf(t, env, "a", nil, func(c *provision.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	ctx := context.Background()
	var pubs []string
	for _, name := range []string{"acme", "other1", "other2"} {
		rep, err := svc.CreateAccount(ctx, api.CreateAccountRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, rep.Account.PublicKey)
	}
	const marker = "MARKER-OF-THE-VALUE"
	rev := env.BucketPut(t, "acct."+pubs[0], []byte("{damaged "+marker))
	if err := st.SeenThrough(ctx, rev); err != nil {
		t.Fatal(err)
	}
	const line = "reconcile: account records cannot be read"
	for pass := 1; pass <= 2; pass++ {
		rep, err := svc.Reconcile(ctx, api.ReconcileRequest{})
		if err != nil {
			t.Fatalf("pass %d with acme's record damaged: %v; want the others reconciled", pass, err)
		}
		if rep.Accounts != 3 || rep.Checked != 2 || rep.Failed != 1 || len(rep.Orphans) != 0 {
			t.Errorf("pass %d with acme's record damaged: %+v; want 3 accounts, the 2 others checked, acme failed and no orphan", pass, rep)
		}
	}
	if n := strings.Count(logs.String(), line); n != 1 {
		t.Errorf("two passes logged %q %d times, want once", line, n)
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, line) && (!strings.Contains(l, pubs[0]) || strings.Contains(l, marker)) {
			t.Errorf("log line %q: want acme named, nothing of its record", l)
		}
	}
}

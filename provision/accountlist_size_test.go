package provision_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestAccountListPagesFitMaxPayload: every page of account.list, followed
// by next_offset, fits the servers' max_payload, also for names JSON
// escapes ('<' becomes \u003c, six bytes): the page was measured by the
// names' own length, and a page over max_payload-1024 is refused with 500
// instead of stopping early with next_offset.
func TestAccountListPagesFitMaxPayload(t *testing.T) {
	t.Parallel()
	const (
		maxPayload = 64 << 10
		accounts   = 120
	)
	env := provtest.Deployment(t, bootstrap.Options{})
	d := newDomain(t, env, nil, func(c *provision.Config) { c.MaxJWTSize = maxPayload })
	defer d.stop()
	ctx := context.Background()
	for i := range accounts {
		if _, err := d.svc.CreateAccount(ctx, api.CreateAccountRequest{Name: fmt.Sprintf("%s%04d", strings.Repeat("<", 100), i)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	for off := 0; ; {
		rep, err := d.svc.ListAccounts(ctx, api.ListRequest{Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(rep)
		if len(data) > maxPayload-1024 {
			t.Fatalf("page at offset %d with %d accounts is %d bytes, over max_payload-1024 = %d", off, len(rep.Accounts), len(data), maxPayload-1024)
		}
		for _, a := range rep.Accounts {
			seen[a.PublicKey]++
		}
		if rep.NextOffset == 0 {
			break
		}
		off = rep.NextOffset
	}
	if len(seen) != accounts {
		t.Errorf("the pages list %d accounts, want %d", len(seen), accounts)
	}
}

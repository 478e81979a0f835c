package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// TestAccountListWithAnUnreadableRecord: while one account record in the
// KV store could not be read (damaged by hand), account list printed
// nothing but the error, so the operator saw none of the accounts the
// service could list. It prints those, then fails saying how many records
// cannot be read (--json: the list with its unreadable count), exiting
// non-zero as the list is not whole.
func TestAccountListWithAnUnreadableRecord(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	c := &cli{env: env, conn: []string{"--server", env.Server.URL(), "--creds", env.Init.AdminCreds}}
	c.mustRun(t, "account", "create", "acme")
	var acme api.AccountReply
	decodeJSON(t, c.mustRun(t, "account", "get", "acme", "--json"), &acme)
	c.mustRun(t, "account", "create", "beta")

	env.BucketPut(t, "acct."+acme.Account.PublicKey, []byte("{damaged"))

	var out, errOut string
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, errOut, err = c.run(t, "account", "list")
		if err != nil || time.Now().After(deadline) {
			break
		}
	}
	if !errors.Is(err, client.ErrUnreadable) || !strings.Contains(err.Error(), "1 account record(s)") {
		t.Fatalf("account list with a damaged record: %v (stderr %q); want an error saying 1 record cannot be read", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "beta ") {
		t.Errorf("account list with acme's record damaged printed:\n%s\nwant beta listed", out)
	}

	out, _, err = c.run(t, "account", "list", "--json")
	if !errors.Is(err, client.ErrUnreadable) {
		t.Errorf("account list --json with a damaged record: %v; want the error", err)
	}
	var list api.ListAccountsReply
	decodeJSON(t, out, &list)
	if list.Total != 1 || len(list.Accounts) != 1 || list.Accounts[0].Name != "beta" || list.Unreadable != 1 {
		t.Errorf("account list --json with acme's record damaged: %+v; want beta, total 1, unreadable 1", list)
	}
}

package responder_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/client"
	"github.com/natsprov/provisioner/provtest"
)

// putRecord writes value over the KV record of account pub, as an
// operator with the service's creds would by hand, waits until the
// instance has it (prov.status names it in damage, or no longer does when
// not damaged) and returns the record that was there.
func putRecord(t *testing.T, h *harness, pub string, value func(was []byte) []byte, damaged bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := jetstream.New(h.env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, h.env.Config.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	key := "acct." + pub
	good, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, key, value(good.Value())); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if d, _ := h.ok(t, "status", `{}`)["damage"].(string); strings.Contains(d, key) == damaged {
			return good.Value()
		}
		if time.Now().After(deadline) {
			t.Fatalf("prov.status damage: %s named is not %v", key, damaged)
		}
	}
}

// badSeal is an account record whose identity seed's seal does not open.
func badSeal(t *testing.T, good []byte) []byte {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal(good, &rec); err != nil {
		t.Fatal(err)
	}
	sealed := strings.SplitN(rec["identity_seed"].(string), ":", 3)
	rec["identity_seed"] = sealed[0] + ":" + sealed[1] + ":" + base64.StdEncoding.EncodeToString(make([]byte, 80))
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnreadableAccountRecordIsNamed: a request on an account whose
// record in the KV store cannot be read (damaged by hand: not JSON, a
// seal that does not open) was answered 500 "internal error (ref N)",
// which sent callers and operators after a bug in the provisioner. It is
// a 503 saying that the account's record cannot be read and that an
// operator must repair it (prov.status's damage names it), quoting
// nothing of the record; the other accounts are served.
func TestUnreadableAccountRecordIsNamed(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	pub := str(h.ok(t, "account.create", `{"name":"acme"}`), "account", "public_key")
	h.ok(t, "account.create", `{"name":"other"}`)
	const marker = "MARKER-OF-THE-VALUE"
	tests := []struct {
		name  string
		value func(good []byte) []byte
	}{
		{"not JSON", func([]byte) []byte { return []byte("{damaged " + marker) }},
		{"a seal that does not open", func(good []byte) []byte { return badSeal(t, good) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := putRecord(t, h, pub, tc.value, true)
			for _, r := range []struct{ op, body string }{
				{"account.get", `{"account":"acme"}`},
				{"account.get", `{"account":"` + pub + `"}`},
				{"account.update", `{"account":"acme","description":"x"}`},
				{"user.create", `{"account":"acme","name":"alice"}`},
			} {
				got := h.req(t, r.op, r.body)
				if got.Code != api.CodeUnavailable || !strings.Contains(got.Description, "cannot be read") || !strings.Contains(got.Description, "prov.status") || strings.Contains(got.Description, marker) || strings.Contains(got.Description, "kvstore") {
					t.Errorf("%s %s with its record damaged: %d %q; want 503 saying the account's record cannot be read, an operator must repair it and prov.status names it, nothing of the record", r.op, r.body, got.Code, got.Description)
				}
			}
			h.ok(t, "account.get", `{"account":"other"}`)
			putRecord(t, h, pub, func([]byte) []byte { return good }, false)
		})
	}
}

// TestUnreadableAccountRecordIsSkipped: while one account's record in the
// KV store could not be read, account.list and every reconcile pass
// failed as a whole, on every instance: no account was listed, and no
// other account was brought in line with the servers until an operator
// repaired the record. The list now holds the others and says how many
// records cannot be read; a pass skips that account, counted as failed,
// and reconciles the rest.
func TestUnreadableAccountRecordIsSkipped(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	pub := str(h.ok(t, "account.create", `{"name":"acme"}`), "account", "public_key")
	for _, name := range []string{"other1", "other2"} {
		h.ok(t, "account.create", map[string]any{"name": name})
	}
	const marker = "MARKER-OF-THE-VALUE"
	putRecord(t, h, pub, func([]byte) []byte { return []byte("{damaged " + marker) }, true)

	r := h.req(t, "account.list", `{}`)
	var list api.ListAccountsReply
	json.Unmarshal(r.Raw, &list)
	if r.Code != 0 || list.Total != 2 || len(list.Accounts) != 2 || list.Accounts[0].Name != "other1" || list.Accounts[1].Name != "other2" || list.Unreadable != 1 {
		t.Errorf("account.list with acme's record damaged: %d %q %s; want other1 and other2 listed, and 1 unreadable", r.Code, r.Description, r.Raw)
	}
	if strings.Contains(string(r.Raw), marker) {
		t.Errorf("account.list quotes the damaged record: %s", r.Raw)
	}
	// The Go client's iterator gives the others, then says the list is
	// not all there: taken for whole, it would hide acme from a caller.
	var names []string
	var end error
	for a, err := range client.New(h.admin).Accounts(context.Background(), api.ListRequest{Limit: 1}) {
		if err != nil {
			end = err
			break
		}
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "other1,other2" || !errors.Is(end, client.ErrUnreadable) {
		t.Errorf("client Accounts with acme's record damaged: %v, then %v; want other1 and other2, then client.ErrUnreadable", names, end)
	}

	r = h.req(t, "reconcile", `{}`)
	var rep api.ReconcileReply
	json.Unmarshal(r.Raw, &rep)
	if r.Code != 0 || rep.Failed != 1 || rep.Checked < 2 || rep.Accounts != 3 || len(rep.Orphans) != 0 {
		t.Errorf("prov.reconcile with acme's record damaged: %d %q %s; want the 2 others checked, acme failed, no orphan", r.Code, r.Description, r.Raw)
	}
}

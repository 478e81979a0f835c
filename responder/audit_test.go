package responder_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natsprov/provisioner/api"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provision"
	"github.com/natsprov/provisioner/provtest"
)

// TestAuditAndStatusOnJetStream: with the JetStream store every change is
// kept in the audit stream, which prov.audit pages per account; prov.status
// names the store, the instance and its role.
func TestAuditAndStatusOnJetStream(t *testing.T) {
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	h.ok(t, "account.create", `{"name":"acme"}`)
	h.ok(t, "account.create", `{"name":"other"}`)
	h.ok(t, "user.create", `{"account":"acme","name":"alice"}`)
	h.ok(t, "user.revoke", `{"account":"acme","user":"alice"}`)

	var page api.AuditReply
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := h.req(t, "audit", `{"account":"acme"}`)
		if r.Code != 0 {
			t.Fatalf("audit: %d %q", r.Code, r.Description)
		}
		json.Unmarshal(r.Raw, &page)
		if len(page.Events) >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var types []string
	for i, e := range page.Events {
		types = append(types, e.Event.Type)
		if e.Event.AccountName != "acme" || e.Event.Caller.Kind != "admin" || e.Event.Result != "ok" {
			t.Errorf("event %d = %+v", i, e.Event)
		}
		if i > 0 && e.Seq <= page.Events[i-1].Seq {
			t.Errorf("sequences do not grow: %d after %d", e.Seq, page.Events[i-1].Seq)
		}
	}
	want := []string{api.EventAccountCreated, api.EventUserCreated, api.EventUserRevoked}
	if len(types) != 3 || types[0] != want[0] || types[1] != want[1] || types[2] != want[2] {
		t.Fatalf("audit of acme = %v, want %v", types, want)
	}
	if provision.LooksLikeSeed(string(mustJSON(t, page))) {
		t.Error("the audit stream holds a seed")
	}
	// Paging: one at a time, following next.
	var seen int
	after := uint64(0)
	for range 10 {
		r := h.req(t, "audit", map[string]any{"account": "acme", "after": after, "limit": 1})
		var p api.AuditReply
		json.Unmarshal(r.Raw, &p)
		seen += len(p.Events)
		if p.Next == 0 {
			break
		}
		after = p.Next
	}
	if seen != 3 {
		t.Errorf("paging one at a time saw %d events, want 3", seen)
	}
	all := h.ok(t, "audit", `{}`)
	if n := len(all["events"].([]any)); n != 4 {
		t.Errorf("the whole audit has %d events, want 4", n)
	}

	// A page larger than the most was answered with the default 100, as
	// if the limit had been read.
	for _, limit := range []int{1001, -1} {
		r := h.req(t, "audit", map[string]any{"limit": limit})
		if r.Code != api.CodeInvalid || !strings.Contains(r.Description, `"limit"`) {
			t.Errorf("audit with limit %d: %d %q, want 400 naming \"limit\"", limit, r.Code, r.Description)
		}
	}
	if n := len(h.ok(t, "audit", map[string]any{"limit": 1000})["events"].([]any)); n != 4 {
		t.Errorf("the audit with limit 1000 has %d events, want 4", n)
	}

	st := h.ok(t, "status", `{}`)
	if st["store"] != "jetstream" || st["role"] != "leader" || st["instance"] == "" {
		t.Errorf("status = %v", st)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAuditPagesFitMaxPayload: an audit page is bounded by bytes as well
// as by "limit", as user.list and account.list are: events whose
// caller.name is a tenant's 4 KB connection name fill max_payload long
// before 1000 of them, and a page of them must come back shorter, with
// "next" to go on from, not as a 500 "reply too large". Following next
// reads every event once.
func TestAuditPagesFitMaxPayload(t *testing.T) {
	t.Parallel()
	env := provtest.JetStreamDeployment(t, bootstrap.Options{})
	env.Start(t)
	h := &harness{env: env, admin: env.Admin(t)}
	acct := str(h.ok(t, "account.create", `{"name":"acme"}`), "account", "public_key")
	if acct == "" {
		t.Fatal("account.create gave no public key")
	}
	// The events a tenant's requests leave, as the service writes them
	// to the audit stream, each with a connection name of 4 KB.
	js, err := jetstream.New(env.ServiceUser(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 400 // 400 x 4 KB: well over the default max_payload of 1 MB
	for i := range n {
		e := api.Event{Type: api.EventUserCreated, Time: time.Now().UTC().Format(time.RFC3339), Account: acct, AccountName: "acme",
			UserName: fmt.Sprintf("u%d", i), Result: "ok",
			Caller: api.Caller{Kind: "tenant", Account: acct, Name: strings.Repeat("n", 4096)}}
		if _, err := js.Publish(ctx, "prov.audit."+acct+"."+api.EventUserCreated, mustJSON(t, e)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]int{}
	after, pages := uint64(0), 0
	for ; pages < n; pages++ {
		r := h.req(t, "audit", map[string]any{"account": acct, "after": after, "limit": api.MaxAuditLimit})
		if r.Code != 0 {
			t.Fatalf("audit page after %d: %d %q, want a shorter page with next", after, r.Code, r.Description)
		}
		var p api.AuditReply
		if err := json.Unmarshal(r.Raw, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Events) == 0 && p.Next != 0 {
			t.Fatalf("an empty page after %d says to go on from %d", after, p.Next)
		}
		for _, e := range p.Events {
			if e.Event.Type == api.EventUserCreated {
				seen[e.Event.UserName]++
			}
		}
		if p.Next == 0 {
			break
		}
		after = p.Next
	}
	if pages == 0 {
		t.Errorf("every event came in one page, which cannot fit max_payload")
	}
	if len(seen) != n {
		t.Errorf("the pages hold %d of the %d events", len(seen), n)
	}
	for u, c := range seen {
		if c != 1 {
			t.Errorf("event of %s read %d times", u, c)
		}
	}
}

package responder_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
	"github.com/natsprov/provisioner/responder"
)

// TestDroppedReplySubjectSeedNotQuoted: a request whose reply subject is
// refused (a server subject, one of the service's own) is dropped, and the
// drop is the endpoint's last error in $SRV.STATS, which every admin may
// read, and a warning in the log (as is a dropped micro discovery
// request). Both quoted the caller's reply subject whole: one that held a
// seed put the seed there. The drop is still counted and logged, without
// the subject.
func TestDroppedReplySubjectSeedNotQuoted(t *testing.T) {
	t.Parallel()
	env := provtest.Deployment(t, bootstrap.Options{})
	svc := env.Start(t)
	admin := env.Admin(t)
	logs := &levelLog{}
	extra(t, env, svc.Provision, responder.Config{Prefix: "prov.rs", Name: "rs", Logger: slog.New(logs)})
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	s := string(seed)
	for _, reply := range []string{"$X." + s, "prov.rs.x." + strings.ToLower(s)} {
		if err := admin.PublishRequest("prov.rs.account.create", reply, []byte(`{"name":"dropped"}`)); err != nil {
			t.Fatal(err)
		}
	}
	// The micro discovery verbs drop such requests too, and log them.
	if err := admin.PublishRequest("$SRV.PING.rs", "prov.rs."+s, nil); err != nil {
		t.Fatal(err)
	}
	if err := admin.Flush(); err != nil {
		t.Fatal(err)
	}
	var get *micro.EndpointStats
	var raw []byte
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m, err := admin.Request("$SRV.STATS.rs", nil, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var st micro.Stats
		if err := json.Unmarshal(m.Data, &st); err != nil {
			t.Fatal(err)
		}
		raw, get = m.Data, endpointOf(t, st, "account_create")
		if get.NumErrors == 2 || time.Now().After(deadline) {
			break
		}
	}
	if get.NumErrors != 2 || !strings.Contains(get.LastError, "reply subject") {
		t.Errorf("account_create: %d errors, last %q; want the 2 drops", get.NumErrors, get.LastError)
	}
	if strings.Contains(strings.ToUpper(string(raw)), s[2:20]) {
		t.Errorf("$SRV.STATS quotes the seed in the reply subject: %s", get.LastError)
	}
	for _, text := range []string{"request dropped", "micro discovery request dropped"} {
		if line, ok := logs.find("WARN", text); !ok {
			t.Errorf("no warning %q:\n%s", text, line)
		}
	}
	logs.mu.Lock()
	defer logs.mu.Unlock()
	for _, line := range logs.lines {
		if strings.Contains(strings.ToUpper(line), s[2:20]) {
			t.Errorf("the log quotes the seed: %s", line)
		}
	}
}

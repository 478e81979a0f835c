package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/config"
)

// TestFinishNeedsTheServersItIsGiven: n2 of a 2-node cluster is down when
// `operator finish` runs with both nodes' configs. Its fresh resolver
// client knew only the servers that answered its first ping, so the check
// passed without looking at n2's copies, which come back signed by the
// old key once n2 restarts, after the old key's removal made them
// unusable. finish must refuse, naming n2, change nothing, and, once n2
// answers, say which servers it checked.
func TestFinishNeedsTheServersItIsGiven(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p := startPair(t, res)
	// The key in use as the next one: every copy is signed by "the new
	// key", so only the down server can stop finish.
	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = fields["operator_signing_key"]
	fields["nats_url"] = p.urls()
	raw, _ = json.MarshalIndent(fields, "", "  ")
	if err := os.WriteFile(res.Config, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	confBefore, _ := os.ReadFile(p.confs[0])
	p.srv[1].Stop()

	_, _, err = runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1])
	if err == nil || !strings.Contains(err.Error(), "n2") || !strings.Contains(err.Error(), "operator finish again") {
		t.Fatalf("finish while n2 is down: %v; want a refusal naming n2 that says to run operator finish again once it answers", err)
	}
	if after, err := config.Load(res.Config); err != nil || after.OperatorSigningKeyNext == "" {
		t.Fatalf("a refused finish changed the config: %+v %v", after, err)
	}
	if now, _ := os.ReadFile(p.confs[0]); string(now) != string(confBefore) {
		t.Fatal("a refused finish changed n1's server config")
	}

	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)
	out, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", p.confs[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("checked 2 servers: %s, %s", "n1", "n2")) {
		t.Errorf("finish does not say which servers it checked:\n%s", out)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/natsprov/provisioner/bench"
	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/provtest"
)

// TestDevPrintsAWorkingRequestLine runs `provisioner dev` and pastes the
// request line it prints into a shell, as a newcomer would.
func TestDevPrintsAWorkingRequestLine(t *testing.T) {
	cli := provtest.Tool(t, "nats")
	dir := filepath.Join(t.TempDir(), "dev")
	port := provtest.FreePort(t)
	var stdout, stderr provtest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--dir", dir, "--port", strconv.Itoa(port)}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev exited with %v; stderr:\n%s", err, stderr.String())
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(stdout.String(), "Ctrl-C stops.") {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not come up; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var line string
	for l := range strings.Lines(stdout.String()) {
		if strings.Contains(l, "request prov.account.create") {
			line = strings.TrimSpace(l)
		}
	}
	if !strings.Contains(line, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("no request line for port %d in:\n%s", port, stdout.String())
	}
	cmd := exec.Command("sh", "-c", strings.Replace(line, "nats ", cli+" ", 1))
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed line failed: %v\n%s", err, out)
	}
	start := bytes.IndexByte(out, '{')
	var reply struct {
		Account struct {
			Name, PublicKey, JWT string
		} `json:"account"`
	}
	if start < 0 || json.Unmarshal(out[start:], &reply) != nil {
		t.Fatalf("the printed line gave no JSON reply:\n%s", out)
	}
	if reply.Account.Name != "demo" {
		t.Fatalf("reply %s", out)
	}
	if _, err := jwt.DecodeAccountClaims(reply.Account.JWT); err != nil {
		t.Errorf("reply JWT: %v", err)
	}
}

func TestInitWritesADeploymentOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"init", "--dir", dir, "--port", "14999"}, &out, &errOut); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{"nats-server -c " + filepath.Join(dir, "nats-server.conf"), "provisioner serve --config " + filepath.Join(dir, "config.json"), "14999"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("init output lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(context.Background(), []string{"init", "--dir", dir}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a second init into the same dir: %v, want a refusal", err)
	}
	if err := run(context.Background(), []string{"init"}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "--dir") {
		t.Errorf("init without --dir: %v", err)
	}
}

// TestServeRefusesBadStarts checks the start-up errors an operator sees.
func TestServeRefusesBadStarts(t *testing.T) {
	dir := t.TempDir()
	res, err := bootstrap.Init(bootstrap.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, cfg map[string]any) string {
		b, _ := json.Marshal(cfg)
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	base := func() map[string]any {
		return map[string]any{
			"nats_url": res.URL, "nats_creds": "provisioner.creds", "operator_jwt": "operator.jwt",
			"operator_signing_key": "operator-signing.nk", "store_dir": "store",
		}
	}
	identity := base()
	identity["operator_signing_key"] = bootstrap.OperatorIdentityKeyFile
	unknown := base()
	unknown["colour"] = "red"
	missing := base()
	delete(missing, "store_dir")
	otherKey, _ := nkeys.CreateOperator()
	seed, _ := otherKey.Seed()
	os.WriteFile(filepath.Join(dir, "other.nk"), seed, 0o600)
	unlisted := base()
	unlisted["operator_signing_key"] = "other.nk"
	otherPub, _ := otherKey.PublicKey()

	tests := []struct {
		name string
		cfg  map[string]any
		want []string
	}{
		{"identity key", identity, []string{"identity key", res.Operator, "signing key"}},
		{"unlisted key", unlisted, []string{otherPub, "not a signing key", res.OperatorSigning}},
		{"unknown field", unknown, []string{"colour"}},
		{"missing field", missing, []string{"store_dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"serve", "--config", write(tt.name+".json", tt.cfg)}, &out, &errOut)
			if err == nil {
				t.Fatal("serve started")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Errorf("the error shows a seed")
			}
		})
	}
}

// TestBenchRuns runs a tiny bench and checks it measured every row; the
// numbers themselves are for people, not for this test.
func TestBenchRuns(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := filepath.Join(t.TempDir(), "bench")
	if err := run(context.Background(), []string{"bench", "-n", "40", "-c", "4", "-rounds", "2", "--json", "--dir", dir}, &out, &errOut); err != nil {
		t.Fatalf("bench: %v\n%s", err, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("bench --json printed no report: %v\n%s", err, out.String())
	}
	if len(rep.Results) != 6 {
		t.Fatalf("%d results, want 6: %s", len(rep.Results), out.String())
	}
	for _, r := range rep.Results {
		if r.Ops == 0 || r.Errors != 0 || r.PerSecond <= 0 || r.P50 <= 0 {
			t.Errorf("result %+v", r)
		}
	}
	if rep.Results[1].Ratio <= 0 || rep.Results[3].Ratio <= 0 {
		t.Errorf("no ratios to the floor: %s", out.String())
	}
}

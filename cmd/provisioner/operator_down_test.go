package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

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
	t.Parallel()
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

// n2Name and n2Cluster are the lines of n2's config that name it and open
// its cluster block, as init writes them.
const n2Name, n2Cluster = `server_name: "n2"`, "cluster {"

// finishReady starts a routed pair of one file deployment whose config
// (cfgRaw, pointing at both servers) has operator_signing_key_next set to
// the key in use, so that finish has nothing to re-sign and checks only
// the servers; n2 is n2's config as init wrote it, server_name "n2" in a
// cluster block.
func finishReady(t *testing.T) (res *bootstrap.Result, p *pair, cfgRaw []byte, n2 string) {
	t.Helper()
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir(), Store: bootstrap.StoreFile})
	if err != nil {
		t.Fatal(err)
	}
	p = startPair(t, res)
	raw, _ := os.ReadFile(res.Config)
	var fields map[string]any
	json.Unmarshal(raw, &fields)
	fields["operator_signing_key_next"] = fields["operator_signing_key"]
	fields["nats_url"] = p.urls()
	cfgRaw, _ = json.MarshalIndent(fields, "", "  ")
	n2Raw, err := os.ReadFile(p.confs[1])
	if err != nil {
		t.Fatal(err)
	}
	n2 = string(n2Raw)
	if !strings.Contains(n2, n2Name) || !strings.Contains(n2, n2Cluster) {
		t.Fatalf("n2's config is not as the test expects:\n%s", n2)
	}
	return res, p, cfgRaw, n2
}

// TestFinishNeedsTheServersOfEveryConfigSyntax: finish requires the
// server_name of every --server-conf with a cluster block. It found them
// with regular expressions that took only one way of writing them, while
// nats-server also takes a block's brace on the next line, a quoted or
// variable server_name, and a cluster block in an included file: n2's
// config written so made n2 not required (finish passed while n2 was
// down, n2's old-key copies to come back), and a name taken as written
// ($N2) made finish refuse for a server that does not exist. Each config
// here is checked to be read by nats-server as n2 with a cluster block.
func TestFinishNeedsTheServersOfEveryConfigSyntax(t *testing.T) {
	res, p, cfgRaw, n2 := finishReady(t)
	const name, cluster = n2Name, n2Cluster
	t.Setenv("PROV_TEST_N2", "n2")
	dir := t.TempDir()
	syntaxes := []struct {
		name string
		conf string
	}{
		{"brace on the next line", strings.Replace(n2, cluster, "cluster\n{", 1)},
		{"cluster colon", strings.Replace(n2, cluster, "cluster: {", 1)},
		{"cluster equals", strings.Replace(n2, cluster, "cluster = {", 1)},
		{"upper case keys", strings.Replace(strings.Replace(n2, cluster, "Cluster {", 1), name, `SERVER_NAME: "n2"`, 1)},
		{"single-quoted name", strings.Replace(n2, name, "server_name: 'n2'", 1)},
		{"variable name", "N2 = n2\n" + strings.Replace(n2, name, "server_name: $N2", 1)},
		{"environment variable name", strings.Replace(n2, name, "server_name: $PROV_TEST_N2", 1)},
		{"included cluster block", func() string {
			i, j := strings.Index(n2, cluster), strings.Index(n2, "\n}\n")
			if err := os.WriteFile(filepath.Join(dir, "cluster.conf"), []byte(n2[i:j+3]), 0o644); err != nil {
				t.Fatal(err)
			}
			return n2[:i] + "include ./cluster.conf\n" + n2[j+3:]
		}()},
	}
	var files []string
	for i, s := range syntaxes {
		file := filepath.Join(dir, fmt.Sprintf("n2-%d.conf", i))
		if err := os.WriteFile(file, []byte(s.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		opts, err := server.ProcessConfigFile(file)
		if err != nil || opts.ServerName != "n2" || opts.Cluster.Name != "rotation" {
			t.Fatalf("%s: nats-server does not read n2 with its cluster block from\n%s\n(%v)", s.name, s.conf, err)
		}
		files = append(files, file)
	}

	p.srv[1].Stop()
	for i, s := range syntaxes {
		t.Run(s.name+", n2 down", func(t *testing.T) {
			if err := os.WriteFile(res.Config, cfgRaw, 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", files[i])
			if err == nil || !strings.Contains(err.Error(), "server n2 (") {
				t.Fatalf("finish while n2 is down: %v; want a refusal naming n2", err)
			}
		})
	}
	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)
	for i, s := range syntaxes {
		t.Run(s.name+", n2 up", func(t *testing.T) {
			if err := os.WriteFile(res.Config, cfgRaw, 0o600); err != nil {
				t.Fatal(err)
			}
			out, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", files[i])
			if err != nil {
				t.Fatalf("finish with n2 up: %v", err)
			}
			if !strings.Contains(out, "checked 2 servers: n1, n2") {
				t.Errorf("finish does not say it checked both servers:\n%s", out)
			}
		})
	}
}

// TestFinishReadsConfigsWithTheServersVariables: nats-server configs take
// secrets from the server's environment (a route password $ROUTE_PASS),
// which the shell an operator runs finish from does not have. finish
// read each --server-conf with nats-server's parser only for server_name
// and the cluster block, and stopped on the first variable it could not
// find, one that says nothing of either: the only way on was to put the
// server's secrets into that shell. Such a variable must not stop it (n2
// down is still found, and n2 up passes); a server_name that is such a
// variable must be refused naming the variable to set.
func TestFinishReadsConfigsWithTheServersVariables(t *testing.T) {
	res, p, cfgRaw, n2 := finishReady(t)
	const name, cluster = n2Name, n2Cluster
	const secret, nameVar = "PROV_TEST_ROUTE_PASS_UNSET", "PROV_TEST_N2_UNSET"
	for _, v := range []string{secret, nameVar} {
		if _, ok := os.LookupEnv(v); ok {
			t.Fatalf("%s is set", v)
		}
	}
	dir := t.TempDir()
	withSecret := filepath.Join(dir, "n2-secret.conf")
	if err := os.WriteFile(withSecret, []byte(strings.Replace(n2, cluster, cluster+"\n  authorization { user: route, password: $"+secret+" }", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	nameFromEnv := filepath.Join(dir, "n2-name.conf")
	if err := os.WriteFile(nameFromEnv, []byte(strings.Replace(n2, name, "server_name: $"+nameVar, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	finish := func(conf string) (string, error) {
		if err := os.WriteFile(res.Config, cfgRaw, 0o600); err != nil {
			t.Fatal(err)
		}
		out, _, err := runCmd(t, "operator", "finish", "--config", res.Config, "--server-conf", p.confs[0], "--server-conf", conf)
		return out, err
	}

	p.srv[1].Stop()
	if _, err := finish(withSecret); err == nil || !strings.Contains(err.Error(), "server n2 (") {
		t.Fatalf("finish while n2 is down, its config using a variable of the server's environment: %v; want a refusal naming n2", err)
	}
	if _, err := finish(nameFromEnv); err == nil || !strings.Contains(err.Error(), nameVar) || !strings.Contains(err.Error(), "server_name") {
		t.Fatalf("finish with n2's server_name from a variable this environment lacks: %v; want a refusal naming %s", err, nameVar)
	}
	if _, ok := os.LookupEnv(secret); ok {
		t.Fatalf("finish left %s set in its environment", secret)
	}
	p.start(t, 1)
	p.routed(t, res.ProvisionerCreds)
	out, err := finish(withSecret)
	if err != nil {
		t.Fatalf("finish with n2 up, its config using a variable of the server's environment: %v", err)
	}
	if !strings.Contains(out, "checked 2 servers: n1, n2") {
		t.Errorf("finish does not say it checked both servers:\n%s", out)
	}
}

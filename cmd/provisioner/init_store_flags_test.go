package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestInitRefusesAKVBucketForTheFileStore: --kv-bucket names the bucket of
// the JetStream store. With --store file, init exited 0 and the flag did
// nothing the operator could see: the config has no kv_bucket (the file
// store has none), yet service.creds were issued with $KV.<bucket>
// permissions for it. It is refused, naming the flag and the store, and
// nothing is written; --kv-bucket with the JetStream store still works.
func TestInitRefusesAKVBucketForTheFileStore(t *testing.T) {
	t.Chdir(t.TempDir())
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"init", "--dir", "deploy", "--store", "file", "--kv-bucket", "mybucket"}, &out, &errOut)
	if err == nil || exitCode(err) != 2 {
		t.Fatalf("got %v (exit %d), want a failure, exit 2", err, exitCode(err))
	}
	if !strings.Contains(err.Error(), "--kv-bucket") || !strings.Contains(err.Error(), "file") {
		t.Errorf("error %q names not --kv-bucket and the file store", err)
	}
	if ents, _ := os.ReadDir("."); len(ents) > 0 {
		t.Errorf("a refused init left %d entries, the first %q", len(ents), ents[0].Name())
	}

	if err := run(context.Background(), []string{"init", "--dir", "kv", "--kv-bucket", "mybucket"}, &out, &errOut); err != nil {
		t.Fatalf("init --kv-bucket with the JetStream store: %v", err)
	}
	data, err := os.ReadFile("kv/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"mybucket"`) {
		t.Errorf("config.json of init --kv-bucket mybucket has no mybucket:\n%s", data)
	}
}

package natsembed_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsprov/provisioner/bootstrap"
	"github.com/natsprov/provisioner/natsembed"
)

// A config with a jetstream block runs with JetStream, its store where the
// file says or where Options.JetStreamDir moves it, so that two servers
// can start from one file.
func TestJetStreamFromTheFile(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    natsembed.Options
		wantDir string
	}{
		{"the file's store_dir", natsembed.Options{Port: -1}, filepath.Join(res.Dir, bootstrap.JetStreamDir)},
		{"moved", natsembed.Options{Port: -1, JetStreamDir: filepath.Join(t.TempDir(), "js")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.wantDir
			if want == "" {
				want = tt.opts.JetStreamDir
			}
			srv, err := natsembed.Start(res.ServerConf, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			if !srv.JetStreamEnabled() {
				t.Fatal("JetStream is off")
			}
			if got := srv.JetStreamConfig().StoreDir; !strings.HasPrefix(got, want) {
				t.Errorf("JetStream stores in %s, want %s", got, want)
			}
			if _, err := os.Stat(want); err != nil {
				t.Errorf("nothing in %s: %v", want, err)
			}
		})
	}
}

// When the file turns JetStream on and it cannot start, Start fails
// instead of running without it.
func TestJetStreamThatCannotStart(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A file where the store directory must be.
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(res.ServerConf, natsembed.Options{Port: -1, JetStreamDir: blocker})
	if err == nil {
		srv.Stop()
		t.Fatal("Start succeeded without JetStream")
	}
	if !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("the error does not say JetStream: %v", err)
	}
}

// A config without a jetstream block runs without, whatever JetStreamDir.
func TestNoJetStreamBlock(t *testing.T) {
	res, err := bootstrap.Init(bootstrap.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(res.ServerConf)
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(data), "jetstream {")
	end := strings.Index(string(data)[start:], "}\n") + start + 2
	conf := filepath.Join(t.TempDir(), "nojs.conf")
	if err := os.WriteFile(conf, append(data[:start:start], data[end:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(conf, natsembed.Options{Port: -1, JetStreamDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if srv.JetStreamEnabled() {
		t.Error("JetStream is on without a jetstream block")
	}
}
